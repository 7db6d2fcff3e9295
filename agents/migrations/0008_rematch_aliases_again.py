from django.db import migrations

from agents.services.assets import aliases_rematch


def rematch(apps, schema_editor):
    """Inventory names stored before the canonicaliser dropped invisible characters and read
    other scripts' digits in A-labels, and unwrapped IPv4 carried in SIIT's translated form or
    in NAT64's local-use prefix: matched the way targets are read now."""
    aliases_rematch(apps.get_model("agents", "AssetAlias"))


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0007_rematch_aliases"),
    ]

    operations = [
        migrations.RunPython(rematch, migrations.RunPython.noop),
    ]
