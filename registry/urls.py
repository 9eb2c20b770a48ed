from django.urls import path

from registry import import_views, views

urlpatterns = [
    path("use-cases/", views.usecase_list, name="usecase-list"),
    path("use-cases/new/", views.usecase_create, name="usecase-create"),
    path("use-cases/<int:pk>/", views.usecase_detail, name="usecase-detail"),
    path("use-cases/<int:pk>/edit/", views.usecase_edit, name="usecase-edit"),
    path("use-cases/<int:pk>/transition/", views.usecase_transition, name="usecase-transition"),
    path("use-cases/<int:use_case_pk>/datasets/new/", views.dataset_create, name="dataset-create"),
    path("use-cases/<int:use_case_pk>/models/new/", views.model_create, name="model-create"),
    path("datasets/", views.dataset_list, name="dataset-list"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset-detail"),
    path(
        "datasets/<int:dataset_pk>/versions/new/",
        views.datasetversion_create,
        name="datasetversion-create",
    ),
    path(
        "datasets/versions/<int:pk>/",
        views.datasetversion_detail,
        name="datasetversion-detail",
    ),
    path("models/", views.model_list, name="model-list"),
    path("models/<int:pk>/", views.model_detail, name="model-detail"),
    path(
        "models/<int:model_pk>/versions/new/",
        views.modelversion_create,
        name="modelversion-create",
    ),
    path("models/versions/<int:pk>/", views.modelversion_detail, name="modelversion-detail"),
    path("models/versions/<int:pk>/edit/", views.modelversion_edit, name="modelversion-edit"),
    path(
        "models/versions/<int:pk>/transition/",
        views.modelversion_transition,
        name="modelversion-transition",
    ),
    path("models/versions/<int:pk>/evidence/new/", views.evidence_create, name="evidence-create"),
    path(
        "models/versions/<int:pk>/deployments/new/",
        views.deployment_create,
        name="deployment-create",
    ),
    path("deployments/", views.deployment_list, name="deployment-list"),
    path("deployments/<int:pk>/", views.deployment_detail, name="deployment-detail"),
    path("import/mlflow/", import_views.mlflow_import_page, name="mlflow-import"),
    path("import/mlflow/<int:pk>/", import_views.mlflow_import_job, name="mlflow-import-job"),
]
