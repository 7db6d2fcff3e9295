from django.db import migrations

from agents.services.assets import aliases_rematch


def rematch(apps, schema_editor):
    """Inventory names stored before the canonicaliser read Latin look-alike letters by their
    Unicode names, A-label local parts by what they look like and sub-addresses (`ceo+x@`) as
    their account: matched the way targets are read now, so that no such spelling misses an
    asset saved earlier."""
    aliases_rematch(apps.get_model("agents", "AssetAlias"))


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0006_demotion_rules"),
    ]

    operations = [
        migrations.RunPython(rematch, migrations.RunPython.noop),
    ]
