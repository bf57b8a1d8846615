from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the OpenAPI extension (drf-spectacular finds extensions by subclass registration).
        from accounts import schema  # noqa: F401
        from accounts.auth_state import user_saved
        from accounts.models import User

        # Not the core flow: these keep the user's copy in Redis, which authentication reads instead of
        # the row, equal to the row on every save and delete (accounts/auth_state.py).
        post_save.connect(user_saved, sender=User, dispatch_uid="accounts.user_state.save")
        post_delete.connect(user_saved, sender=User, dispatch_uid="accounts.user_state.delete")
