# MicroService and Worker components run at least two tasks in production, so that losing one
# task (a deployment, a host, an availability zone) never takes the service down.
package panka

# The replica count as panka deploys it: one when unset.
replicas := object.get(input.infra, ["scaling", "replicas"], 1)

autoscaling := object.get(input.infra, ["scaling", "autoscaling"], {})

# The fewest tasks the component runs: autoscaling's minimum when autoscaling is on (the
# replica count when no minimum is set), else the replica count.
min_tasks := object.get(autoscaling, "minReplicas", replicas) if autoscaling.enabled == true

min_tasks := replicas if not autoscaling.enabled == true

deny contains msg if {
	input.environment == "production"
	input.kind in {"MicroService", "Worker"}
	min_tasks < 2
	msg := sprintf(
		"%s runs %d task(s) in production, at least 2 are required: set scaling.replicas (or scaling.autoscaling.minReplicas) in its infra.yaml",
		[input.kind, min_tasks],
	)
}
