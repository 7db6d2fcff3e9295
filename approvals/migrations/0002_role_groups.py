"""The console's role groups, so that a fresh install can give people roles (grant_role, the
admin) without the demo data."""

from django.db import migrations

# soc_console.roles.ALL as of this migration: a migration must not change with the code.
ROLES = ("analyst", "senior_analyst", "manager", "admin")


def create_role_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):

    dependencies = [
        ("approvals", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    # Going back leaves the groups: they may hold people by then.
    operations = [migrations.RunPython(create_role_groups, migrations.RunPython.noop)]
