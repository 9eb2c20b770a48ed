"""The demo organisation built by ``manage.py seed_demo`` (data only, no logic)."""

from __future__ import annotations

USERS = [
    # username, role, first name, last name, staff?
    ("admin", "admin", "Ada", "Admin", True),
    ("board", "governance board", "Bernard", "Boardman", False),
    ("board2", "governance board", "Beatrice", "Bell", False),
    ("risk", "risk officer", "Rita", "Riskwell", False),
    ("auditor", "auditor", "Aurelio", "Audit", False),
    ("alice", "contributor", "Alice", "Nguyen", False),
    ("bob", "contributor", "Bob", "Okafor", False),
    ("viewer", "viewer", "Vera", "Viewer", False),
]

USE_CASES = [
    {
        "name": "Credit limit recommendation",
        "purpose": "Recommend a credit limit for new card applicants; a credit officer decides.",
        "affected_people": "Retail card applicants in the EU (about 40,000 a month).",
        "decision_impact": "advisory",
        "personal_data": True,
        "sensitive_data": False,
        "risk_tier": "high",
        "risk_rationale": "Creditworthiness assessment of natural persons: EU AI Act Annex III 5(b).",
        "human_oversight": "Every recommendation is reviewed by a credit officer, who can override it.",
        "status": ["assessed", "approved", "in_production"],
        "team": "alice",
        "business_owner": "risk",
        "technical_owner": "alice",
    },
    {
        "name": "Card fraud screening",
        "purpose": "Hold card transactions that look fraudulent for a second check.",
        "affected_people": "All card holders; merchants.",
        "decision_impact": "automated",
        "personal_data": True,
        "sensitive_data": False,
        "risk_tier": "high",
        "risk_rationale": "Automated decisions with financial effect on individuals.",
        "human_oversight": "Held transactions are released or blocked by the fraud desk within 2h.",
        "status": ["assessed", "approved", "in_production"],
        "team": "bob",
        "business_owner": "risk",
        "technical_owner": "bob",
    },
    {
        "name": "CV screening assistant",
        "purpose": "Rank applications for recruiters by match with the job profile.",
        "affected_people": "Job applicants.",
        "decision_impact": "advisory",
        "personal_data": True,
        "sensitive_data": True,
        "risk_tier": "high",
        "risk_rationale": "Employment and recruitment: EU AI Act Annex III 4(a).",
        "human_oversight": "Recruiters see the rank and the reasons; shortlists are made by people.",
        "status": ["assessed", "approved", "in_production", "under_review"],
        "team": "alice",
        "business_owner": "board",
        "technical_owner": "alice",
    },
    {
        "name": "Support reply drafting",
        "purpose": "Draft replies to customer e-mails for support agents to edit and send.",
        "affected_people": "Customers writing to support.",
        "decision_impact": "advisory",
        "personal_data": True,
        "sensitive_data": False,
        "risk_tier": "limited",
        "risk_rationale": "Generated text shown to people: transparency obligations apply.",
        "human_oversight": "Agents edit and send every draft; nothing is sent automatically.",
        "status": ["assessed", "approved"],
        "team": "bob",
        "business_owner": "risk",
        "technical_owner": "bob",
    },
    {
        "name": "Churn propensity for marketing",
        "purpose": "Score customers' likelihood to leave, to plan retention campaigns.",
        "affected_people": "Existing customers (aggregated campaign targeting).",
        "decision_impact": "advisory",
        "personal_data": True,
        "sensitive_data": False,
        "risk_tier": "minimal",
        "risk_rationale": "Marketing prioritisation without legal or similar effects.",
        "human_oversight": "Campaign managers choose segments; scores are not shown to customers.",
        "status": ["assessed", "approved", "in_production"],
        "team": "alice",
        "business_owner": "risk",
        "technical_owner": "alice",
    },
    {
        "name": "Insurance claims triage",
        "purpose": "Route incoming claims to fast-track or expert handling.",
        "affected_people": "Policy holders filing claims.",
        "decision_impact": "advisory",
        "personal_data": True,
        "sensitive_data": True,
        "risk_tier": "high",
        "risk_rationale": "Life and health insurance pricing and claims: EU AI Act Annex III 5(c).",
        "human_oversight": "Handlers can re-route any claim; fast-track payouts are sampled weekly.",
        "status": ["assessed"],
        "team": "bob",
        "business_owner": "board",
        "technical_owner": "bob",
    },
    {
        "name": "Invoice field extraction",
        "purpose": "Read supplier invoices (OCR) and pre-fill accounts-payable fields.",
        "affected_people": "Suppliers; AP clerks.",
        "decision_impact": "advisory",
        "personal_data": False,
        "sensitive_data": False,
        "risk_tier": "minimal",
        "risk_rationale": "Back-office automation with clerk verification.",
        "human_oversight": "Clerks confirm every extracted field before posting.",
        "status": [],
        "team": "alice",
        "business_owner": "risk",
        "technical_owner": "alice",
    },
    {
        "name": "In-store emotion recognition",
        "purpose": "Proposed: infer shopper emotions from store cameras to adapt displays.",
        "affected_people": "Store visitors.",
        "decision_impact": "automated",
        "personal_data": True,
        "sensitive_data": True,
        "risk_tier": "unacceptable",
        "risk_rationale": "Emotion recognition from biometric data is prohibited (EU AI Act Art. 5).",
        "human_oversight": "Not applicable: the proposal was rejected.",
        "status": ["retired"],
        "team": "bob",
        "business_owner": "board",
        "technical_owner": "bob",
    },
]

DATASHEET = {
    "motivation": "Built to train and evaluate the {uc} model; funded by the {team} team.",
    "composition": (
        "{rows:,} rows, one per {unit}; {cols} columns of numeric and categorical features "
        "plus the outcome label. Contains no free text."
    ),
    "collection_process": (
        "Extracted nightly from the operational warehouse between {start} and {end}; "
        "no sampling beyond de-duplication."
    ),
    "preprocessing": (
        "Identifiers pseudonymised with a keyed hash; missing incomes imputed by median per "
        "region; labels from outcomes observed 12 months after the decision."
    ),
    "uses": "Training and validation of models for this use case only. Not for pricing.",
    "distribution": "Internal only; stored in the governed lake zone with access logging.",
    "maintenance": "Refreshed quarterly by the data platform team; errata tracked in the catalogue.",
}

SUBGROUPS = ["age<30", "age 30-50", "age>50", "female", "male", "region north", "region south"]
