"""ECS RunTask and ListTasks where moto 5.1.22 answers otherwise than AWS.

- ListTasks with `serviceName`: AWS lists only the tasks the service started, whose `group` is
  `service:{name}` (ECS puts every task a service starts in that group). moto 5.1.22 skips the
  filter ("we can't filter on service_name until the backend actually launches tasks") and lists
  every task of the cluster, so a service would be told its neighbours' stopped tasks. moto starts
  no task for a service; a task started with RunTask in the group `service:{name}` (how the tests
  stand in for a service's tasks) is that service's to this patch, as the group says to AWS. The
  name may be given as the service's ARN. Every other filter is left to moto.
- RunTask of a task definition whose containers set no memory of their own: AWS takes the task's
  memory (always set on Fargate, where container memory is optional); moto 5.1.22 adds up the
  containers' and fails with a TypeError (HTTP 500). The sum only serves placement on EC2
  container instances, so a container without memory counts as none there.
- A task's containers in RunTask, DescribeTasks and StopTask answers: AWS gives a container's
  `cpu` and `memory` as strings (the API's `Container` shape); moto 5.1.22 copies the task
  definition's integers, which a strict client (the Rust SDK) refuses to read. They are written
  as strings, as AWS writes them.
"""

import types

MEMORY_KEYS = ("memory", "memoryReservation", "Memory", "MemoryReservation")


def apply() -> None:
    from moto.ecs import models

    backend = models.EC2ContainerServiceBackend
    original = backend.list_tasks
    if getattr(original, "_panka_service_filter", False):
        return

    def list_tasks(  # type: ignore[no-untyped-def]
        self,
        cluster_str=None,
        container_instance=None,
        family=None,
        started_by=None,
        service_name=None,
        desiredStatus=None,
    ):
        tasks = original(
            self, cluster_str, container_instance, family, started_by, None, desiredStatus
        )
        if not service_name:
            return tasks
        group = "service:" + service_name.split("/")[-1]
        return [t for t in tasks if t.group == group]

    list_tasks._panka_service_filter = True  # type: ignore[attr-defined]
    backend.list_tasks = list_tasks

    requirements = backend._calculate_task_resource_requirements

    def calculate_task_resource_requirements(task_definition):  # type: ignore[no-untyped-def]
        containers = [
            c if any(k in c for k in MEMORY_KEYS) else dict(c, memory=0)
            for c in task_definition.container_definitions
        ]
        return requirements(types.SimpleNamespace(container_definitions=containers))

    backend._calculate_task_resource_requirements = staticmethod(
        calculate_task_resource_requirements
    )

    container_init = models.Container.__init__

    def init_container(self, task_def):  # type: ignore[no-untyped-def]
        container_init(self, task_def)
        for field in ("cpu", "memory"):
            value = getattr(self, field, None)
            if value is not None:
                setattr(self, field, str(value))

    models.Container.__init__ = init_container
