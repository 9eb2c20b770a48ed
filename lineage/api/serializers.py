"""Shapes of the lineage API (intake results, nodes, graphs) for clients and the schema."""

from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from lineage.models import LineageEvent, LineageNode, NodeKind


class IngestResultSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="the stored event's id")
    sha256 = serializers.CharField(
        help_text="SHA-256 of the event's canonical JSON (keys sorted, compact)"
    )
    stored = serializers.BooleanField(help_text="false: an identical event was already stored")
    useCase = serializers.IntegerField(help_text="the use case the event was recorded under")


class BatchResultSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    stored = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    events = IngestResultSerializer(many=True)


class GraphNodeSerializer(serializers.Serializer):
    id = serializers.CharField(
        help_text="public node id, e.g. dataset:<namespace>:<name>; 'hidden:…' when redacted"
    )
    kind = serializers.CharField()
    type = serializers.CharField()
    redacted = serializers.BooleanField()
    label = serializers.CharField(required=False)
    namespace = serializers.CharField(required=False)
    name = serializers.CharField(required=False)
    objectId = serializers.IntegerField(required=False, allow_null=True)
    useCase = serializers.IntegerField(required=False, allow_null=True)
    linked = serializers.BooleanField(
        required=False, allow_null=True, help_text="OpenLineage datasets: linked to the registry"
    )
    validFrom = serializers.DateTimeField(required=False, allow_null=True)
    validTo = serializers.DateTimeField(required=False, allow_null=True)
    attrs = serializers.DictField(required=False)
    depth = serializers.IntegerField(required=False)


class GraphEdgeSerializer(serializers.Serializer):
    origin = serializers.CharField()
    destination = serializers.CharField()
    kind = serializers.CharField()
    columns = serializers.DictField(required=False, help_text="column lineage detail")


class NeighbourSerializer(GraphNodeSerializer):
    inEdges = GraphEdgeSerializer(many=True)
    outEdges = GraphEdgeSerializer(many=True)


class NeighbourhoodSerializer(serializers.Serializer):
    node = GraphNodeSerializer()
    depth = serializers.IntegerField()
    graph = NeighbourSerializer(many=True)
    truncated = serializers.BooleanField()


class SubgraphSerializer(serializers.Serializer):
    node = GraphNodeSerializer()
    depth = serializers.IntegerField()
    nodes = GraphNodeSerializer(many=True)
    edges = GraphEdgeSerializer(many=True)
    truncated = serializers.BooleanField()


class AffectedSerializer(GraphNodeSerializer):
    path = serializers.ListField(child=serializers.CharField(), help_text="node ids from the start")


class ImpactSerializer(serializers.Serializer):
    node = GraphNodeSerializer()
    depth = serializers.IntegerField()
    modelVersions = AffectedSerializer(many=True)
    deployments = AffectedSerializer(many=True)
    useCases = AffectedSerializer(many=True)
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="nodes per kind")
    total = serializers.DictField(
        child=serializers.IntegerField(), help_text="impact targets per kind, listed or not"
    )
    offset = serializers.IntegerField()
    limit = serializers.IntegerField(allow_null=True, help_text="targets listed per kind")
    complete = serializers.BooleanField(help_text="every target is listed in this answer")
    truncated = serializers.BooleanField()


class PathSerializer(serializers.Serializer):
    found = serializers.BooleanField()
    direction = serializers.ChoiceField(choices=["downstream", "upstream"], required=False)
    length = serializers.IntegerField(required=False)
    nodes = GraphNodeSerializer(many=True, required=False)
    edges = GraphEdgeSerializer(many=True, required=False)

    def get_fields(self) -> dict:
        fields = super().get_fields()
        fields["from"] = GraphNodeSerializer()
        fields["to"] = GraphNodeSerializer()
        return fields


class ProductionSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    environment = serializers.CharField()
    deployments = inline_serializer(
        "ProductionDeployment",
        fields={
            "deployment": GraphNodeSerializer(),
            "liveFrom": serializers.DateTimeField(),
            "liveUntil": serializers.DateTimeField(allow_null=True),
            "modelVersion": GraphNodeSerializer(allow_null=True),
            "trainedOn": GraphNodeSerializer(many=True),
            "validatedOn": GraphNodeSerializer(many=True),
            "testedOn": GraphNodeSerializer(many=True),
            "upstream": inline_serializer(
                "ProductionUpstream",
                fields={
                    "nodes": GraphNodeSerializer(many=True),
                    "edges": GraphEdgeSerializer(many=True),
                    "truncated": serializers.BooleanField(),
                },
                required=False,
            ),
        },
        many=True,
    )


class LineageNodeSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True, help_text=", ".join(k.value for k in NodeKind))

    class Meta:
        model = LineageNode
        fields = [
            "id",
            "key",
            "kind",
            "label",
            "namespace",
            "name",
            "object_id",
            "use_case",
            "linked",
            "attrs",
            "valid_from",
            "valid_to",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class LineageEventSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(
        read_only=True, help_text=", ".join(k.value for k in LineageEvent.Kind)
    )
    received_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = LineageEvent
        fields = [
            "id",
            "sha256",
            "kind",
            "event_type",
            "event_time",
            "run_id",
            "job_namespace",
            "job_name",
            "producer",
            "schema_url",
            "use_case",
            "received_by",
            "received_at",
            "payload",
        ]
        read_only_fields = fields


class LineageEventListSerializer(LineageEventSerializer):
    class Meta(LineageEventSerializer.Meta):
        fields = [f for f in LineageEventSerializer.Meta.fields if f != "payload"]
        read_only_fields = fields
