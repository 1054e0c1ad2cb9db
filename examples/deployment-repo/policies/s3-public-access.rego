# Buckets block public access in every environment: objects are shared through the
# application or presigned URLs, never by opening the bucket.
package panka

deny contains msg if {
	input.kind == "S3"
	input.spec.publicAccess == "allowed"
	msg := "bucket allows public access: set publicAccess: blocked (or remove it; blocked is the default)"
}
