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
