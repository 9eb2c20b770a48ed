from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework import serializers

from portal.models import (
    ApiToken,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from portal.roles import GRANT_LEVELS
from registry.api.fields import ScopedRelatedField
from registry.models import UseCase

User = get_user_model()


class ApiTokenSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    use_cases = ScopedRelatedField(queryset=UseCase.objects.all(), many=True, required=False)
    state = serializers.CharField(read_only=True)

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
        ]
        read_only_fields = ["prefix", "revoked_at", "revoked_reason", "last_used_at", "created_at"]
        extra_kwargs = {"expires_at": {"required": False}}


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    """The create response: the token itself, which is shown this once and never again."""

    token = serializers.CharField(read_only=True, help_text="Shown once, at creation only")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


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


# ---------------------------------------------------------------- webhooks


class WebhookSubscriptionSerializer(serializers.ModelSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices), allow_empty=False
    )
    use_case = ScopedRelatedField(
        queryset=UseCase.objects.all(),
        required=False,
        allow_null=True,
        help_text="Only this use case's events; null: every use case (administrators only)",
    )
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = WebhookSubscription
        fields = [
            "id",
            "name",
            "url",
            "events",
            "use_case",
            "active",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class WebhookSubscriptionCreatedSerializer(WebhookSubscriptionSerializer):
    """The create response: the signing secret, which is shown this once and never again."""

    secret = serializers.CharField(
        source="shown_secret",
        read_only=True,
        help_text="HMAC key of the X-Charter-Signature header; in the create response only",
    )

    class Meta(WebhookSubscriptionSerializer.Meta):
        fields = [*WebhookSubscriptionSerializer.Meta.fields, "secret"]


class WebhookUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    url = serializers.URLField(max_length=1000, required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices),
        allow_empty=False,
        required=False,
    )
    active = serializers.BooleanField(required=False)


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "at", "status_code", "error", "duration_ms", "response_excerpt"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    tries = WebhookAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "status",
            "attempts",
            "response_status",
            "last_error",
            "created_at",
            "next_attempt_at",
            "finished_at",
            "audit_seq",
            "payload",
            "tries",
        ]
