"""ElastiCache calls that moto 5.1.22 lacks: ModifyReplicationGroup, IncreaseReplicaCount and
DecreaseReplicaCount.

Real AWS has all three; without them a replication group could only be replaced, never changed.
They act on moto's own replication group model (`node_groups`, `member_clusters`) and answer with
moto's serializer, so the XML is the one botocore's model of the API describes
(`<ModifyReplicationGroupResult><ReplicationGroup>…`), as AWS sends it.

Emulated:
- ModifyReplicationGroup: CacheNodeType, EngineVersion (upgrades only), AutomaticFailoverEnabled,
  MultiAZEnabled, SnapshotRetentionLimit, SnapshotWindow, ReplicationGroupDescription and
  ApplyImmediately. Any other parameter is refused (InvalidParameterValue naming it) rather than
  accepted and ignored.
- IncreaseReplicaCount / DecreaseReplicaCount with NewReplicaCount (for every node group, as AWS
  does for cluster mode enabled), not ReplicaConfiguration or ReplicasToRemove. Replicas are
  added as `{group}-NNN` (`{group}-{shard}-NNN` with cluster mode) and removed from the end; the
  primary is never removed.

The rules AWS enforces that a caller must order its calls around are kept: a group that is not
`available` is refused (InvalidReplicationGroupState), an engine version cannot go down, automatic
failover needs a replica, Multi-AZ needs automatic failover, and a group with either keeps at
least one replica. Where they differ from AWS: every change is complete when the call returns (the
group stays `available` and PendingModifiedValues stays empty, where AWS shows `modifying` for
minutes), and replicas get no cache cluster of their own (moto creates none for any group member).
"""

import copy
from typing import Any, Optional

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.elasticache.exceptions import (
    InvalidParameterCombinationException,
    InvalidParameterValueException,
    ReplicationGroupNotFound,
)
from moto.elasticache.models import ElastiCacheBackend, ReplicationGroup
from moto.elasticache.responses import ElastiCacheResponse

# The most replicas a node group may have (AWS: up to 5 replicas besides the primary).
MAX_REPLICAS = 5

MODIFY_PARAMETERS = {
    "ReplicationGroupId",
    "ApplyImmediately",
    "CacheNodeType",
    "EngineVersion",
    "AutomaticFailoverEnabled",
    "MultiAZEnabled",
    "SnapshotRetentionLimit",
    "SnapshotWindow",
    "ReplicationGroupDescription",
}
REPLICA_COUNT_PARAMETERS = {"ReplicationGroupId", "ApplyImmediately", "NewReplicaCount"}


class InvalidReplicationGroupState(ServiceException):
    code = "InvalidReplicationGroupState"


def _group(backend: ElastiCacheBackend, group_id: str) -> ReplicationGroup:
    """The group, which must be `available`: AWS changes no group in another state."""
    group = backend.replication_groups.get(group_id)
    if group is None:
        raise ReplicationGroupNotFound(group_id)
    if group.status != "available":
        raise InvalidReplicationGroupState(
            f"Replication group must be in available state to modify (it is {group.status})."
        )
    return group


def _version(text: Optional[str]) -> Optional[tuple[int, ...]]:
    """`7.0.7` as (7, 0, 7); `6.x` as (6,); None when there is no version to compare."""
    if not text:
        return None
    parts = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts) or None


def _replicas(group: ReplicationGroup) -> int:
    """Replicas per node group (every node group has the same number here)."""
    return min(len(ng["node_group_members"]) - 1 for ng in group.node_groups)


def _new_replica(members: list[dict[str, Any]]) -> dict[str, Any]:
    """A member shaped like the group's last one, numbered after the highest."""
    last = members[-1]
    prefix = last["cache_cluster_id"].rsplit("-", 1)[0]
    number = max(int(m["cache_cluster_id"].rsplit("-", 1)[1]) for m in members) + 1
    replica = copy.deepcopy(last)
    replica["cache_cluster_id"] = f"{prefix}-{number:0>3}"
    if "current_role" in replica:
        replica["current_role"] = "replica"
    if "read_endpoint" in replica:
        replica["read_endpoint"]["address"] = replica["read_endpoint"]["address"].replace(
            last["cache_cluster_id"], replica["cache_cluster_id"], 1
        )
    return replica


def _set_replicas(backend: ElastiCacheBackend, group: ReplicationGroup, count: int) -> None:
    """Gives every node group `count` replicas and lists the members again."""
    for node_group in group.node_groups:
        members = node_group["node_group_members"]
        while len(members) - 1 > count:
            # Replicas go from the end; the first member is the primary.
            gone = members.pop()
            backend.cache_clusters.pop(gone["cache_cluster_id"], None)
        while len(members) - 1 < count:
            members.append(_new_replica(members))
    group.member_clusters = [
        m["cache_cluster_id"] for ng in group.node_groups for m in ng["node_group_members"]
    ]
    if group.snapshotting_cluster_id and group.snapshotting_cluster_id not in group.member_clusters:
        group.snapshotting_cluster_id = group.member_clusters[-1]


def _members(backend: ElastiCacheBackend, group: ReplicationGroup) -> list[Any]:
    """The cache clusters moto holds for the group's members (none for groups it created)."""
    return [backend.cache_clusters[c] for c in group.member_clusters if c in backend.cache_clusters]


def modify_replication_group(
    self: ElastiCacheBackend,
    replication_group_id: str,
    cache_node_type: Optional[str] = None,
    engine_version: Optional[str] = None,
    automatic_failover_enabled: Optional[bool] = None,
    multi_az_enabled: Optional[bool] = None,
    snapshot_retention_limit: Optional[int] = None,
    snapshot_window: Optional[str] = None,
    description: Optional[str] = None,
) -> ReplicationGroup:
    group = _group(self, replication_group_id)
    # Everything is checked before anything changes, as one AWS call is all or nothing.
    have, want = _version(group.engine_version), _version(engine_version)
    if have and want and want < have[: len(want)]:
        raise InvalidParameterCombinationException(
            f"Cannot downgrade the engine version from {group.engine_version} to {engine_version}."
        )
    failover = (
        group.automatic_failover == "enabled"
        if automatic_failover_enabled is None
        else automatic_failover_enabled
    )
    multi_az = group.multi_az == "enabled" if multi_az_enabled is None else multi_az_enabled
    if failover and not group.cluster_enabled and _replicas(group) == 0:
        raise InvalidParameterCombinationException(
            "Automatic failover cannot be enabled on a replication group without replicas."
        )
    if multi_az and not failover:
        raise InvalidParameterCombinationException(
            "Multi-AZ cannot be enabled without automatic failover."
        )

    if cache_node_type:
        group.cache_node_type = cache_node_type
        for cluster in _members(self, group):
            cluster.cache_node_type = cache_node_type
    if engine_version:
        group.engine_version = engine_version
        for cluster in _members(self, group):
            cluster.engine_version = engine_version
    group.automatic_failover = "enabled" if failover else "disabled"
    group.multi_az = "enabled" if multi_az else "disabled"
    if snapshot_retention_limit is not None:
        group.snapshot_retention_limit = snapshot_retention_limit
    if snapshot_window:
        group.snapshot_window = snapshot_window
    if description is not None:
        group.description = description
    return group


def increase_replica_count(
    self: ElastiCacheBackend, replication_group_id: str, new_replica_count: int
) -> ReplicationGroup:
    group = _group(self, replication_group_id)
    current = _replicas(group)
    if not current < new_replica_count <= MAX_REPLICAS:
        raise InvalidParameterValueException(
            f"NewReplicaCount must be more than the current {current} and at most {MAX_REPLICAS}."
        )
    _set_replicas(self, group, new_replica_count)
    return group


def decrease_replica_count(
    self: ElastiCacheBackend, replication_group_id: str, new_replica_count: int
) -> ReplicationGroup:
    group = _group(self, replication_group_id)
    current = _replicas(group)
    if not 0 <= new_replica_count < current:
        raise InvalidParameterValueException(
            f"NewReplicaCount must be less than the current {current} and at least 0."
        )
    if (
        new_replica_count == 0
        and not group.cluster_enabled
        and "enabled" in (group.multi_az, group.automatic_failover)
    ):
        raise InvalidParameterCombinationException(
            "A replication group with Multi-AZ or automatic failover enabled needs a replica."
        )
    _set_replicas(self, group, new_replica_count)
    return group


def _only(response: ElastiCacheResponse, action: str, emulated: set[str]) -> None:
    """Refuses parameters this patch does not emulate, instead of ignoring them silently."""
    extra = sorted(set(response.params) - emulated)
    if extra:
        raise InvalidParameterValueException(
            f"The emulator does not implement {', '.join(extra)} of {action} "
            "(see scripts/moto_patches/elasticache.py)."
        )


def _replica_count(response: ElastiCacheResponse) -> int:
    count = response._get_int_param("NewReplicaCount")
    if count is None:
        raise InvalidParameterValueException("NewReplicaCount must be given.")
    return count


def _modify_replication_group_response(self: ElastiCacheResponse) -> ActionResult:
    _only(self, "ModifyReplicationGroup", MODIFY_PARAMETERS)
    group = self.elasticache_backend.modify_replication_group(
        replication_group_id=self._get_param("ReplicationGroupId"),
        cache_node_type=self._get_param("CacheNodeType"),
        engine_version=self._get_param("EngineVersion"),
        automatic_failover_enabled=self._get_bool_param("AutomaticFailoverEnabled"),
        multi_az_enabled=self._get_bool_param("MultiAZEnabled"),
        snapshot_retention_limit=self._get_int_param("SnapshotRetentionLimit"),
        snapshot_window=self._get_param("SnapshotWindow"),
        description=self._get_param("ReplicationGroupDescription"),
    )
    return ActionResult({"ReplicationGroup": group})


def _increase_replica_count_response(self: ElastiCacheResponse) -> ActionResult:
    _only(self, "IncreaseReplicaCount", REPLICA_COUNT_PARAMETERS)
    group = self.elasticache_backend.increase_replica_count(
        self._get_param("ReplicationGroupId"), _replica_count(self)
    )
    return ActionResult({"ReplicationGroup": group})


def _decrease_replica_count_response(self: ElastiCacheResponse) -> ActionResult:
    _only(self, "DecreaseReplicaCount", REPLICA_COUNT_PARAMETERS)
    group = self.elasticache_backend.decrease_replica_count(
        self._get_param("ReplicationGroupId"), _replica_count(self)
    )
    return ActionResult({"ReplicationGroup": group})


def apply() -> None:
    """Adds each call moto does not have yet; a moto that has one keeps its own."""
    calls = {
        "modify_replication_group": (modify_replication_group, _modify_replication_group_response),
        "increase_replica_count": (increase_replica_count, _increase_replica_count_response),
        "decrease_replica_count": (decrease_replica_count, _decrease_replica_count_response),
    }
    for name, (backend_method, response_method) in calls.items():
        if hasattr(ElastiCacheResponse, name):
            continue
        setattr(ElastiCacheBackend, name, backend_method)
        setattr(ElastiCacheResponse, name, response_method)
