"""Request and response shapes of the auth API; the checks that need the database live in services."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import PASSWORD_MAX_LENGTH, User

# Hashing cost grows with the password length; nobody types more than this.


def password_field(**kwargs: Any) -> serializers.CharField:
    return serializers.CharField(
        trim_whitespace=False, max_length=PASSWORD_MAX_LENGTH, style={"input_type": "password"}, **kwargs
    )


class UserSerializer(serializers.ModelSerializer[User]):
    user_id = serializers.IntegerField(source="pk", read_only=True)

    class Meta:
        model = User
        fields = ("user_id", "email", "date_joined", "time_zone")
        read_only_fields = fields


class CredentialsSerializer(serializers.Serializer[Any]):
    email = serializers.CharField(max_length=254)
    password = password_field()


class TokenPairSerializer(serializers.Serializer[Any]):
    access = serializers.CharField()
    refresh = serializers.CharField()


class SessionSerializer(TokenPairSerializer):
    user = UserSerializer()


class RefreshSerializer(serializers.Serializer[Any]):
    refresh = serializers.CharField()


class LogoutSerializer(serializers.Serializer[Any]):
    refresh = serializers.CharField(required=False, allow_blank=True)


class MeUpdateSerializer(serializers.Serializer[Any]):
    time_zone = serializers.CharField(required=False, max_length=64)
    old_password = password_field(required=False)
    new_password = password_field(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "new_password" in attrs and "old_password" not in attrs:
            raise serializers.ValidationError({"old_password": ["Enter your old password to change it."]})
        if "old_password" in attrs and "new_password" not in attrs:
            raise serializers.ValidationError({"new_password": ["Enter the new password."]})
        return attrs


class ErrorDetailSerializer(serializers.Serializer[Any]):
    """Shape of 401 and 429 answers (documentation only)."""

    detail = serializers.CharField()
    code = serializers.CharField(required=False)


class WebhookSecretSerializer(serializers.Serializer[Any]):
    secret = serializers.CharField(
        read_only=True, help_text="The new signing secret (whsec_...). Shown only in this answer; store it now."
    )
