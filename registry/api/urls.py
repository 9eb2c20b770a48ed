from rest_framework.routers import DefaultRouter

from registry.api import views

router = DefaultRouter(trailing_slash=True)
router.register("use-cases", views.UseCaseViewSet)
router.register("datasets", views.DatasetViewSet)
router.register("dataset-versions", views.DatasetVersionViewSet)
router.register("models", views.ModelViewSet)
router.register("model-versions", views.ModelVersionViewSet)
router.register("evidence", views.EvidenceViewSet)
router.register("artifacts", views.ArtifactViewSet)
router.register("deployments", views.DeploymentViewSet)
router.register("signing-keys", views.SigningKeyViewSet)
router.register("attestations", views.AttestationViewSet)
router.register("portal-key", views.PortalKeyViewSet, basename="portal-key")

urlpatterns = router.urls
