from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework import serializers

from portal.models import ApiToken
from portal.roles import GRANT_LEVELS
from registry.api.fields import ScopedRelatedField
from registry.models import UseCase

User = get_user_model()


class ApiTokenSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    use_cases = ScopedRelatedField(queryset=UseCase.objects.all(), many=True, required=False)
    state = serializers.CharField(read_only=True)
    token = serializers.CharField(read_only=True, help_text="Shown once, at creation only")

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "user",
            "prefix",
            "use_cases",
            "expires_at",
            "revoked_at",
            "revoked_reason",
            "last_used_at",
            "state",
            "created_at",
            "token",
        ]
        read_only_fields = ["prefix", "revoked_at", "revoked_reason", "last_used_at", "created_at"]
        extra_kwargs = {"expires_at": {"required": False}}


class RevokeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class GrantSerializer(serializers.Serializer):
    use_case = ScopedRelatedField(queryset=UseCase.objects.all())
    user = serializers.SlugRelatedField(
        slug_field="username", queryset=User.objects.all(), required=False, allow_null=True
    )
    group = serializers.SlugRelatedField(
        slug_field="name", queryset=Group.objects.all(), required=False, allow_null=True
    )
    level = serializers.ChoiceField(choices=[*GRANT_LEVELS, "none"])
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict) -> dict:
        if bool(attrs.get("user")) == bool(attrs.get("group")):
            raise serializers.ValidationError({"user": "give exactly one of 'user' or 'group'"})
        return attrs
