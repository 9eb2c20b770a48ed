"""Access pages: your API tokens, and (for administrators) grants per use case."""

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

from portal import services
from portal.models import ApiToken
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
