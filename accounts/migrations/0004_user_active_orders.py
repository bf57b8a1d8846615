from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_kept_session_version"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="active_orders",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="user",
            name="orders_total",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
    ]
