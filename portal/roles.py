"""The roles Charter ships with. Each is a Django group created by a data migration."""

ADMIN = "admin"
BOARD = "governance board"
RISK_OFFICER = "risk officer"
AUDITOR = "auditor"
CONTRIBUTOR = "contributor"
VIEWER = "viewer"

ALL = (ADMIN, BOARD, RISK_OFFICER, AUDITOR, CONTRIBUTOR, VIEWER)

# Grant levels a use case can give a user or group, and the object permissions
# each one carries (cumulative).
GRANT_LEVELS = {
    "view": ("view_usecase",),
    "contribute": ("view_usecase", "contribute_usecase"),
    "own": ("view_usecase", "contribute_usecase", "change_usecase"),
}

# The global permissions each role holds through its group.
ROLE_PERMS = {
    ADMIN: [
        "registry.view_usecase",
        "registry.add_usecase",
        "registry.change_usecase",
        "registry.contribute_usecase",
        "registry.manage_access",
        "audits.view_auditevent",
    ],
    BOARD: ["registry.view_usecase", "audits.view_auditevent"],
    RISK_OFFICER: [
        "registry.view_usecase",
        "registry.add_usecase",
        "registry.change_usecase",
        "audits.view_auditevent",
    ],
    AUDITOR: ["registry.view_usecase", "audits.view_auditevent"],
    CONTRIBUTOR: ["registry.add_usecase"],
    VIEWER: [],
}


def ensure_roles(group_model: type, permission_model: type) -> None:
    """Create the role groups with their permissions (idempotent).

    Takes the model classes so that the data migration can pass its historical ones.
    """
    for role, perms in ROLE_PERMS.items():
        group, _ = group_model.objects.get_or_create(name=role)  # type: ignore[attr-defined]
        for dotted in perms:
            app_label, codename = dotted.split(".")
            group.permissions.add(
                permission_model.objects.get(  # type: ignore[attr-defined]
                    content_type__app_label=app_label, codename=codename
                )
            )
