"""Access pages: your API tokens and webhooks, and (for administrators) grants per use case."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal import services, webhooks
from portal.models import ApiToken, WebhookEvent, WebhookSubscription
from portal.permissions import Access
from portal.roles import GRANT_LEVELS
from registry.models import UseCase, UseCaseGroupObjectPermission, UseCaseUserObjectPermission


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, label="What is it for?")
    use_cases = forms.ModelMultipleChoiceField(
        queryset=UseCase.objects.none(), required=False, label="Limit to use cases"
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Empty: the default lifetime",
    )

    def __init__(self, *args: object, access: Access, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["use_cases"].queryset = access.filter(UseCase.objects.all())


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    access = Access(user=request.user)
    form = TokenForm(request.POST or None, access=access)
    secret = None
    if request.method == "POST" and form.is_valid():
        try:
            _, secret = services.issue_token(
                access,
                user=request.user,
                name=form.cleaned_data["name"],
                use_cases=list(form.cleaned_data["use_cases"]),
                expires_at=form.cleaned_data["expires_at"],
            )
        except ValidationError as exc:
            form.add_error(None, exc.messages)
        else:
            form = TokenForm(access=access)
    return render(
        request,
        "portal/tokens.html",
        {
            "form": form,
            "secret": secret,
            "tokens": ApiToken.objects.filter(user=request.user).prefetch_related("use_cases"),
        },
    )


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    try:
        services.revoke_token(Access(user=request.user), token, reason="revoked in the portal")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Token {token.prefix} revoked.")
    return redirect("access-tokens")


class GrantForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        to_field_name="username",
    )
    group = forms.ModelChoiceField(queryset=Group.objects.order_by("name"), required=False)
    level = forms.ChoiceField(choices=[(k, k) for k in GRANT_LEVELS] + [("none", "remove")])

    def clean(self) -> dict:
        data = super().clean() or {}
        if bool(data.get("user")) == bool(data.get("group")):
            raise ValidationError("Choose a user or a group (one of them).")
        return data


@login_required
def grants(request: HttpRequest, pk: int) -> HttpResponse:
    access = Access(user=request.user)
    if not access.can_administer():
        raise PermissionDenied
    uc = get_object_or_404(UseCase, pk=pk)
    form = GrantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        principal = form.cleaned_data["user"] or form.cleaned_data["group"]
        if form.cleaned_data["level"] == "none":
            services.revoke_access(access, uc, principal, reason="portal")
        else:
            services.grant_access(
                access, uc, principal, form.cleaned_data["level"], reason="portal"
            )
        messages.success(request, f"Access of {principal} updated.")
        return redirect("access-grants", pk=uc.pk)
    rows = []
    for perm in UseCaseUserObjectPermission.objects.filter(content_object=uc).select_related(
        "user"
    ):
        rows.append(("user", perm.user))
    for perm in UseCaseGroupObjectPermission.objects.filter(content_object=uc).select_related(
        "group"
    ):
        rows.append(("group", perm.group))
    seen, holders = set(), []
    for kind, principal in rows:
        if (kind, principal.pk) in seen:
            continue
        seen.add((kind, principal.pk))
        holders.append(
            {"kind": kind, "name": str(principal), "level": services.current_level(uc, principal)}
        )
    return render(request, "portal/grants.html", {"uc": uc, "form": form, "holders": holders})


@login_required
def grants_index(request: HttpRequest) -> HttpResponse:
    if not Access(user=request.user).can_administer():
        raise PermissionDenied
    return render(request, "portal/grants_index.html", {"use_cases": UseCase.objects.all()})


# ---------------------------------------------------------------- webhooks


class WebhookForm(forms.Form):
    name = forms.CharField(max_length=200, required=False, label="Name")
    url = forms.URLField(max_length=1000, label="Target URL", assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple, label="Events"
    )
    use_case = forms.ModelChoiceField(
        queryset=UseCase.objects.none(),
        required=False,
        label="Use case",
        empty_label="Every use case (administrators)",
    )

    def __init__(self, *args: object, access: Access, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        queryset = access.filter(UseCase.objects.all())
        if not access.can_administer():
            queryset = queryset.filter(
                pk__in=[uc.pk for uc in queryset if access.can_contribute(uc)]
            )
            self.fields["use_case"].required = True
            self.fields["use_case"].empty_label = None
        self.fields["use_case"].queryset = queryset


def _form_errors(form: forms.Form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


@login_required
def webhooks_index(request: HttpRequest) -> HttpResponse:
    access = Access(user=request.user)
    form = WebhookForm(request.POST or None, access=access)
    created = secret = None
    if request.method == "POST" and form.is_valid():
        try:
            created, secret = webhooks.create_subscription(access, **form.cleaned_data)
        except ValidationError as exc:
            _form_errors(form, exc)
        except PermissionDenied as exc:
            form.add_error("use_case", str(exc))
        else:
            form = WebhookForm(access=access)
    return render(
        request,
        "portal/webhooks.html",
        {
            "form": form,
            "created": created,
            "secret": secret,
            "subscriptions": webhooks.visible_subscriptions(access),
        },
    )


def _subscription(request: HttpRequest, pk: int) -> tuple[Access, WebhookSubscription]:
    access = Access(user=request.user)
    return access, get_object_or_404(webhooks.visible_subscriptions(access), pk=pk)


@login_required
def webhook_detail(request: HttpRequest, pk: int) -> HttpResponse:
    access, sub = _subscription(request, pk)
    deliveries = sub.deliveries.prefetch_related("tries").order_by("-created_at")[:50]
    context = {"sub": sub, "deliveries": deliveries, "events": WebhookEvent.choices}
    if request.headers.get("HX-Request"):
        return render(request, "portal/_webhook_deliveries.html", context)
    return render(request, "portal/webhook_detail.html", context)


@login_required
@require_POST
def webhook_update(request: HttpRequest, pk: int) -> HttpResponse:
    access, sub = _subscription(request, pk)
    data: dict[str, object] = {}
    if "active" in request.POST:
        data["active"] = request.POST["active"] == "true"
    if "events" in request.POST:
        data["events"] = request.POST.getlist("events")
    try:
        webhooks.update_subscription(access, sub, **data)
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, "Subscription updated.")
    return redirect("access-webhook", pk=sub.pk)


@login_required
@require_POST
def webhook_test(request: HttpRequest, pk: int) -> HttpResponse:
    access, sub = _subscription(request, pk)
    try:
        webhooks.send_test(access, sub)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "A ping is on its way; its answer appears in the log below.")
    return redirect("access-webhook", pk=sub.pk)


@login_required
@require_POST
def webhook_delete(request: HttpRequest, pk: int) -> HttpResponse:
    access, sub = _subscription(request, pk)
    try:
        webhooks.delete_subscription(access, sub, reason="deleted in the portal")
    except PermissionDenied as exc:
        messages.error(request, str(exc))
        return redirect("access-webhook", pk=sub.pk)
    messages.success(request, f"Subscription {sub} deleted.")
    return redirect("access-webhooks")
