"""Registry writes create their lineage nodes and edges, in the writer's transaction.

Connected to ``post_save``, ``post_delete`` and ``m2m_changed`` of the registry
models in :class:`lineage.apps.LineageConfig.ready`, so ``registry.services``
needs no lineage calls. Edges (upstream → downstream):

* dataset version → model version: ``trained_on`` / ``validated_on`` / ``tested_on``
* parent dataset version → derived version: ``derived_from``
* parent model version → retrained version: ``retrained_from``
* model version → deployment: ``deployed_as``; deployment → use case: ``serves``

A link removed in the registry ends its edge (``removed_at``) rather than
deleting it, so the graph can be read as of any time. Deployments keep the
intervals they were live in (``attrs.live``; ``valid_from``/``valid_to`` span
them), which answers "what was in production at time T".
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from django.db.models import Q
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

from lineage.models import EdgeKind, LineageEdge, LineageNode, NodeKind, key_digest

LIVE = "active"
ENDED = {"replaced", "rolled_back", "retired"}


def _registry_models() -> dict[str, Any]:
    from registry.models import DatasetVersion, Deployment, ModelVersion, UseCase

    return {
        NodeKind.USE_CASE: UseCase,
        NodeKind.DATASET_VERSION: DatasetVersion,
        NodeKind.MODEL_VERSION: ModelVersion,
        NodeKind.DEPLOYMENT: Deployment,
    }


#: Set on a registry object by :func:`on_save` when it was just created: the key hash of
#: the node made for it, so that linking its relations in the same transaction need not
#: look the node up (its insert may still be waiting to go with the next statement).
NODE_KEY = "_charter_lineage_node_key_hash"

#: Node fields an insert of a new registry object's node sets when a node with its key is
#: already there (left by an earlier object with the same id, which SQLite can reuse).
_NODE_FIELDS = ["kind", "object_id", "label", "use_case_id", "attrs", "valid_from", "valid_to"]


def upsert_node(obj: Any, *, created: bool = False, deferred: bool = False) -> LineageNode:
    """Create or refresh the node of a registry object (label, use case, attributes).

    ``created``: the object was inserted in this transaction, so its node is new too: one
    ``INSERT … ON CONFLICT (key_hash) DO UPDATE`` instead of a read and then a write.
    ``deferred`` (with ``created``): that insert may travel with the next statement
    (``portal.db.defer``), in which case the node returned has no id yet."""
    from lineage.services import registry_spec

    spec = registry_spec(obj)
    digest = key_digest(spec.key)
    if created:
        attrs = dict(spec.attrs)
        node = LineageNode(
            kind=spec.kind,
            key=spec.key,
            key_hash=digest,
            object_id=spec.object_id,
            label=spec.label,
            use_case_id=spec.use_case_id,
            attrs=attrs,
        )
        if spec.kind == NodeKind.DEPLOYMENT:
            _set_live(obj, node, attrs)
        _insert_node(node, deferred=deferred)
        return node
    node = LineageNode.objects.filter(key_hash=digest).first()
    if node is None:
        node = LineageNode(
            kind=spec.kind, key=spec.key, key_hash=digest, object_id=spec.object_id, attrs={}
        )
    attrs = {**node.attrs, **spec.attrs}
    if spec.kind == NodeKind.DEPLOYMENT:
        _set_live(obj, node, attrs)
    changed = (
        node.pk is None
        or node.label != spec.label
        or node.use_case_id != spec.use_case_id
        or node.attrs != attrs
    )
    node.label, node.use_case_id, node.attrs = spec.label, spec.use_case_id, attrs
    if changed:
        node.save()
    return node


def _insert_node(node: LineageNode, *, deferred: bool = False) -> None:
    """``INSERT … ON CONFLICT (key_hash) DO UPDATE … RETURNING id`` of a new node: what
    ``bulk_create(update_conflicts=True)`` sends, with the statement written once per
    process and the values prepared by the fields themselves (``get_db_prep_save``)."""
    from django.db import connection

    from portal.db import defer

    sql, fields = _node_insert_statement(connection.vendor)
    values = [f.get_db_prep_save(f.pre_save(node, True), connection) for f in fields]
    if deferred and defer(sql, values):
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        node.pk = cursor.fetchone()[0]
    node._state.adding, node._state.db = False, connection.alias


@functools.cache
def _node_insert_statement(vendor: str) -> tuple[str, list[Any]]:
    from django.db import connection

    q = connection.ops.quote_name
    meta = LineageNode._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    update = [meta.get_field(name).column for name in [*_NODE_FIELDS, "updated_at"]]
    sql = (
        f"INSERT INTO {q(meta.db_table)} ({', '.join(q(f.column) for f in fields)}) "  # noqa: S608  # nosec B608
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({q(meta.get_field('key_hash').column)}) DO UPDATE SET "
        + ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in update)
        + f" RETURNING {q(meta.pk.column)}"
    )
    return sql, fields


def _set_live(deployment: Any, node: LineageNode, attrs: dict[str, Any]) -> None:
    """A deployment node's live intervals (``attrs["live"]``) and the span they cover."""
    _live_intervals(deployment, attrs)
    spans = attrs["live"]
    node.valid_from = _parse(spans[0][0]) if spans else None
    node.valid_to = _parse(spans[-1][1]) if spans and spans[-1][1] else None


def _parse(value: str) -> Any:
    from django.utils.dateparse import parse_datetime

    return parse_datetime(value)


def _iso(value: Any) -> str:
    return value.astimezone(timezone.UTC).isoformat()


def _live_intervals(deployment: Any, attrs: dict[str, Any]) -> None:
    """Open an interval when the deployment goes live, close it when it stops."""
    spans: list[list[str | None]] = [list(s) for s in attrs.get("live", [])]
    is_open = bool(spans) and spans[-1][1] is None
    if deployment.status == LIVE and not is_open:
        start = deployment.released_at if not spans else timezone.now()
        spans.append([_iso(start), None])
    elif deployment.status in ENDED and is_open:
        end = timezone.now()
        if deployment.status == "replaced":
            successor = (
                deployment.replaced_by.order_by("released_at")
                .values_list("released_at", flat=True)
                .first()
            )
            if successor is not None:
                end = max(successor, _parse(spans[-1][0]))
        spans[-1][1] = _iso(end)
    attrs["live"] = spans


def _node_ids(kind: str, objects: Iterable[Any]) -> dict[int, int]:
    """Registry object id → node id, creating missing nodes."""
    objects = list(objects)
    ids = dict(
        LineageNode.objects.filter(kind=kind, object_id__in=[o.pk for o in objects]).values_list(
            "object_id", "id"
        )
    )
    for obj in objects:
        if obj.pk not in ids:
            ids[obj.pk] = upsert_node(obj).pk
    return ids


def link(src: Any, dst: Any, kind: str) -> None:
    """A live registry edge from ``src`` to ``dst`` (no-op when it exists)."""
    s = _node_ids(_kind_of(src), [src])[src.pk]
    d = _node_ids(_kind_of(dst), [dst])[dst.pk]
    if not LineageEdge.objects.filter(src_id=s, dst_id=d, kind=kind, removed_at=None).exists():
        LineageEdge.objects.create(src_id=s, dst_id=d, kind=kind, source="registry")


def link_many(
    instance: Any,
    model: Any,
    pks: Iterable[int],
    kind: str,
    *,
    instance_is_src: bool,
    _general: bool = False,
) -> None:
    """Live edges between ``instance`` and each ``model`` row in ``pks`` (one direction),
    as :func:`link` makes them, in three statements whatever the number of rows (nodes,
    live edges, insert) when their nodes exist; missing nodes are created first. For an
    object created in this transaction, one ``INSERT … SELECT`` (see below); ``_general``
    takes the three-statement path regardless."""
    pks = set(pks)
    if not pks:
        return
    from registry.services import CREATING

    own_kind, other_kind = _kind_of(instance), _kind_of_model(model)
    # An object created in this transaction: its node was just made (on_save) and has no
    # edges of this kind yet, as ``registry.services._save_new`` links each relation once.
    own_key = getattr(instance, NODE_KEY, None) if getattr(instance, CREATING, False) else None
    if own_key is not None and not _general:

        def link_the_rest(inserted: int) -> None:
            if inserted == len(pks):
                return
            # Some rows had no node yet (rare: registry writes make their nodes); those
            # edges were not inserted, and the general path links what is left.
            rest = pks - set(
                LineageNode.objects.filter(kind=other_kind, object_id__in=pks).values_list(
                    "object_id", flat=True
                )
            )
            link_many(instance, model, rest, kind, instance_is_src=instance_is_src, _general=True)

        _insert_edges_from_nodes(
            own_key, other_kind, pks, kind, instance_is_src, then=link_the_rest
        )
        return
    wanted = Q(kind=other_kind, object_id__in=pks) | Q(kind=own_kind, object_id=instance.pk)
    nodes = {
        (k, object_id): node_id
        for k, object_id, node_id in LineageNode.objects.filter(wanted).values_list(
            "kind", "object_id", "id"
        )
    }
    if (own_kind, instance.pk) not in nodes:
        nodes[own_kind, instance.pk] = upsert_node(instance).pk
    missing = [pk for pk in pks if (other_kind, pk) not in nodes]
    for other in model.objects.filter(pk__in=missing) if missing else ():
        nodes[other_kind, other.pk] = upsert_node(other).pk
    own = nodes[own_kind, instance.pk]
    pairs = {
        (own, node_id) if instance_is_src else (node_id, own)
        for (k, object_id), node_id in nodes.items()
        if k == other_kind and object_id in pks
    }
    live = set(
        LineageEdge.objects.filter(
            kind=kind,
            removed_at=None,
            src_id__in={s for s, _ in pairs},
            dst_id__in={d for _, d in pairs},
        ).values_list("src_id", "dst_id")
    )
    new = [
        LineageEdge(src_id=s, dst_id=d, kind=kind, source="registry")
        for s, d in sorted(pairs - live)
    ]
    if new:
        LineageEdge.objects.bulk_create(new)


def _insert_edges_from_nodes(
    own_key: str,
    other_kind: str,
    pks: set[int],
    kind: str,
    own_is_src: bool,
    *,
    then: Any,
) -> None:
    """Edges between the node with key hash ``own_key`` and the existing nodes of
    ``other_kind`` rows ``pks``, in one ``INSERT … SELECT`` (no read of the nodes first),
    sent with the next statement where the connection can (``portal.db.defer``);
    ``then`` is called with the number inserted."""
    from django.db import connection

    from portal.db import defer

    edge, node = LineageEdge._meta.db_table, LineageNode._meta.db_table
    q = connection.ops.quote_name
    own = f"(SELECT o.id FROM {q(node)} o WHERE o.key_hash = %s)"  # noqa: S608  # nosec B608
    ends = f"{own}, n.id" if own_is_src else f"n.id, {own}"
    placeholders = ", ".join(["%s"] * len(pks))
    sql = (
        f"INSERT INTO {q(edge)} (src_id, dst_id, kind, detail, source, created_at) "  # noqa: S608  # nosec B608
        f"SELECT {ends}, %s, %s, %s, %s FROM {q(node)} n "
        f"WHERE n.kind = %s AND n.object_id IN ({placeholders})"
    )
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    params = [own_key, kind, "{}", LineageEdge.Source.REGISTRY, now, other_kind, *sorted(pks)]
    if defer(sql, params, on_result=then):
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = cursor.rowcount
    then(inserted)


def unlink(*, kind: str, src: Any = None, dst: Any = None, keep_src: Any = None) -> None:
    """End live edges of ``kind`` from ``src`` and/or into ``dst`` (except from ``keep_src``)."""
    edges = LineageEdge.objects.filter(kind=kind, removed_at=None)
    if src is not None:
        edges = edges.filter(src__kind=_kind_of(src), src__object_id=src.pk)
    if dst is not None:
        edges = edges.filter(dst__kind=_kind_of(dst), dst__object_id=dst.pk)
    if keep_src is not None:
        edges = edges.exclude(src__kind=_kind_of(keep_src), src__object_id=keep_src.pk)
    edges.update(removed_at=timezone.now())


def _kind_of(obj: Any) -> str:
    return _kind_of_model(type(obj))


def _kind_of_model(cls: type) -> str:
    for kind, model in _registry_models().items():
        if issubclass(cls, model):
            return kind
    raise TypeError(cls.__name__)


# ---------------------------------------------------------------- handlers


def on_save(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    from registry.models import Deployment, ModelVersion

    node = upsert_node(instance, created=created and not raw, deferred=True)
    if created and not raw:
        setattr(instance, NODE_KEY, node.key_hash)
    if isinstance(instance, ModelVersion):
        if instance.parent_id is not None:
            unlink(kind=EdgeKind.RETRAINED_FROM, dst=instance, keep_src=instance.parent)
            link(instance.parent, instance, EdgeKind.RETRAINED_FROM)
        elif not created:
            unlink(kind=EdgeKind.RETRAINED_FROM, dst=instance)
    elif isinstance(instance, Deployment) and created:
        link(instance.model_version, instance, EdgeKind.DEPLOYED_AS)
        link(instance, instance.use_case, EdgeKind.SERVES)


def on_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    LineageNode.objects.filter(kind=_kind_of(instance), object_id=instance.pk).delete()


M2M_KINDS = {
    "training_datasets": EdgeKind.TRAINED_ON,
    "validation_datasets": EdgeKind.VALIDATED_ON,
    "test_datasets": EdgeKind.TESTED_ON,
}


def _m2m_handler(kind: str, upstream_is_target: bool) -> Any:
    """For ``instance.<field>.add(targets)``: edges target → instance when the targets are
    upstream (datasets of a model version, parents of a derived version)."""

    def handler(
        sender: Any,
        instance: Any,
        action: str,
        reverse: bool,
        model: Any,
        pk_set: set[int] | None,
        **kwargs: Any,
    ) -> None:
        # ``reverse``: called on the other side (e.g. dataset_version.trained_model_versions).
        instance_upstream = reverse == upstream_is_target
        if action == "post_add":
            link_many(instance, model, pk_set or (), kind, instance_is_src=instance_upstream)
        elif action == "post_remove":
            for other in model.objects.filter(pk__in=pk_set or ()):
                src, dst = (instance, other) if instance_upstream else (other, instance)
                unlink(kind=kind, src=src, dst=dst)
        elif action == "post_clear":
            if instance_upstream:
                unlink(kind=kind, src=instance)
            else:
                unlink(kind=kind, dst=instance)

    return handler


_HANDLERS: list[Any] = []  # strong references: signals keep weak ones


def connect() -> None:
    from registry.models import DatasetVersion, Deployment, ModelVersion, UseCase

    for model in (UseCase, DatasetVersion, ModelVersion, Deployment):
        post_save.connect(on_save, sender=model, dispatch_uid=f"lineage-save-{model.__name__}")
        post_delete.connect(
            on_delete, sender=model, dispatch_uid=f"lineage-delete-{model.__name__}"
        )
    for field, kind in M2M_KINDS.items():
        handler = _m2m_handler(kind, upstream_is_target=True)
        _HANDLERS.append(handler)
        m2m_changed.connect(
            handler,
            sender=getattr(ModelVersion, field).through,
            dispatch_uid=f"lineage-m2m-{field}",
        )
    handler = _m2m_handler(EdgeKind.DERIVED_FROM, upstream_is_target=True)
    _HANDLERS.append(handler)
    m2m_changed.connect(
        handler, sender=DatasetVersion.derived_from.through, dispatch_uid="lineage-m2m-derived"
    )
