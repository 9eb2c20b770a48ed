from __future__ import annotations

import json
from typing import Any

from django import forms

from approvals.models import Decision
from registry.models import Deployment, Evidence


class RequestForm(forms.Form):
    environment = forms.ChoiceField(
        choices=[(e, label) for e, label in Deployment.Environment.choices if e != "development"],
        initial="production",
    )
    summary = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        help_text="What changed and why it should be released.",
    )


class DecisionForm(forms.Form):
    verdict = forms.ChoiceField(choices=Decision.Verdict.choices, widget=forms.RadioSelect)
    role = forms.ChoiceField(choices=(), required=False)
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: Any, roles: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        roles = roles or []
        self.fields["role"].choices = [(r, r) for r in roles]
        if len(roles) <= 1:
            self.fields["role"].widget = forms.HiddenInput()
            self.fields["role"].initial = roles[0] if roles else ""


class PolicyForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    quorum = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
        help_text='Roles and approvals needed, as JSON: {"governance board": 2, "risk officer": 1}',
    )
    required_evidence = forms.MultipleChoiceField(
        choices=Evidence.Kind.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    checks = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "class": "mono"}),
        help_text="One check per line: name | CEL expression. Expressions are validated "
        "before saving.",
    )
    validity_days = forms.IntegerField(min_value=1, max_value=3650)
    separation_of_duties = forms.BooleanField(required=False)
    rollback_without_approval = forms.BooleanField(required=False)

    def clean_quorum(self) -> dict[str, int]:
        try:
            value = json.loads(self.cleaned_data["quorum"])
        except ValueError as exc:
            raise forms.ValidationError(f"not JSON: {exc}") from exc
        return value

    def clean_checks(self) -> list[dict[str, str]]:
        checks = []
        for n, line in enumerate(self.cleaned_data["checks"].splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, expression = line.partition("|")
            if not sep:
                raise forms.ValidationError(f"line {n}: write 'name | expression'")
            checks.append({"name": name.strip(), "expression": expression.strip()})
        return checks

    @staticmethod
    def initial_for(policy: Any) -> dict[str, Any]:
        return {
            "name": policy.name,
            "description": policy.description,
            "quorum": json.dumps(policy.quorum),
            "required_evidence": policy.required_evidence,
            "checks": "\n".join(f"{c['name']} | {c['expression']}" for c in policy.checks),
            "validity_days": policy.validity_days,
            "separation_of_duties": policy.separation_of_duties,
            "rollback_without_approval": policy.rollback_without_approval,
        }


class SignOffForm(forms.Form):
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
