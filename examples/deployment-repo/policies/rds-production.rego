# Production databases survive the loss of an availability zone and cannot be deleted by a
# mistaken change: Multi-AZ with deletion protection, both said explicitly.
package panka

deny contains msg if {
	input.environment == "production"
	input.kind == "RDS"
	object.get(input.spec, ["instance", "multiAZ"], false) != true
	msg := "database is not Multi-AZ in production: set instance.multiAZ: true"
}

deny contains msg if {
	input.environment == "production"
	input.kind == "RDS"
	object.get(input.spec, "deletionProtection", false) != true
	msg := "database has no deletion protection in production: set deletionProtection: true"
}
