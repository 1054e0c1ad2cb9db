//! Every kind panka knows: its API version, file name, whether it is a component, and the
//! outputs a component of that kind publishes for `valueFrom`; and the kinds of the stack-wide
//! resources panka derives from a stack (never written in a repository).

use std::fmt;

/// API group and version of stacks, services and variables in repository files.
pub const CORE_API_VERSION: &str = "core.panka.io/v1";
/// API group and version of stack and component infrastructure in repository files.
pub const INFRA_API_VERSION: &str = "infra.panka.io/v1";
/// API group and version of components in repository files.
pub const COMPONENTS_API_VERSION: &str = "components.panka.io/v1";

/// A document kind of a deployment repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `stack.yaml`.
    Stack,
    /// `service.yaml`.
    Service,
    /// `environments/{env}/variables.yaml`.
    Variables,
    /// `infra/*.yaml` of a stack.
    StackInfra,
    /// `infra.yaml` of a component, or a service's defaults file.
    ComponentInfra,
    /// ECS service with ports.
    MicroService,
    /// ECS service without ports.
    Worker,
    /// RDS DB instance.
    Rds,
    /// DynamoDB table.
    DynamoDb,
    /// S3 bucket.
    S3,
    /// SQS queue.
    Sqs,
    /// ElastiCache Redis replication group.
    ElastiCacheRedis,
    /// Stack-wide: the VPC, subnets and security groups (looked up, never created).
    Network,
    /// Stack-wide: the ECS cluster.
    EcsCluster,
    /// Stack-wide: the application load balancer and its listener.
    LoadBalancer,
    /// Stack-wide: the ECS task execution role.
    ExecutionRole,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 12] = [
        Kind::Stack,
        Kind::Service,
        Kind::Variables,
        Kind::StackInfra,
        Kind::ComponentInfra,
        Kind::MicroService,
        Kind::Worker,
        Kind::Rds,
        Kind::DynamoDb,
        Kind::S3,
        Kind::Sqs,
        Kind::ElastiCacheRedis,
    ];

    /// Component kinds: each is one deployable thing with a driver.
    pub const COMPONENTS: [Kind; 7] = [
        Kind::MicroService,
        Kind::Worker,
        Kind::Rds,
        Kind::DynamoDb,
        Kind::S3,
        Kind::Sqs,
        Kind::ElastiCacheRedis,
    ];

    /// Stack-wide resources: derived from the stack (its containers and databases need them),
    /// planned and applied like components, never written in a repository.
    pub const STACK_RESOURCES: [Kind; 4] = [
        Kind::Network,
        Kind::EcsCluster,
        Kind::LoadBalancer,
        Kind::ExecutionRole,
    ];

    /// The `kind:` value in YAML (for stack-wide resources: the kind state records).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Stack => "Stack",
            Kind::Service => "Service",
            Kind::Variables => "Variables",
            Kind::StackInfra => "StackInfra",
            Kind::ComponentInfra => "ComponentInfra",
            Kind::MicroService => "MicroService",
            Kind::Worker => "Worker",
            Kind::Rds => "RDS",
            Kind::DynamoDb => "DynamoDB",
            Kind::S3 => "S3",
            Kind::Sqs => "SQS",
            Kind::ElastiCacheRedis => "ElastiCacheRedis",
            Kind::Network => "Network",
            Kind::EcsCluster => "EcsCluster",
            Kind::LoadBalancer => "LoadBalancer",
            Kind::ExecutionRole => "ExecutionRole",
        }
    }

    /// Parse a `kind:` value of a repository document (exact, case-sensitive); stack-wide kinds
    /// are not documents and are not found.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Parse the kind state records for something panka applied: a component kind or a
    /// stack-wide one.
    pub fn from_recorded(name: &str) -> Option<Kind> {
        Kind::COMPONENTS
            .into_iter()
            .chain(Kind::STACK_RESOURCES)
            .find(|k| k.name() == name)
    }

    /// Whether this is a stack-wide resource (see [`Kind::STACK_RESOURCES`]).
    pub fn is_stack_resource(self) -> bool {
        Kind::STACK_RESOURCES.contains(&self)
    }

    /// The `apiVersion:` a document of this kind must carry.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Stack | Kind::Service | Kind::Variables => CORE_API_VERSION,
            Kind::StackInfra | Kind::ComponentInfra => INFRA_API_VERSION,
            _ => COMPONENTS_API_VERSION,
        }
    }

    /// Whether this is a component kind.
    pub fn is_component(self) -> bool {
        Kind::COMPONENTS.contains(&self)
    }

    /// Whether components of this kind run as ECS tasks (and so take `ComponentInfra`).
    pub fn is_container(self) -> bool {
        matches!(self, Kind::MicroService | Kind::Worker)
    }

    /// Whether replacing or deleting a component of this kind loses data.
    pub fn is_stateful(self) -> bool {
        matches!(
            self,
            Kind::Rds | Kind::DynamoDb | Kind::S3 | Kind::ElastiCacheRedis
        )
    }

    /// The file name a component of this kind is defined in, e.g. `rds.yaml`.
    pub fn file_name(self) -> Option<&'static str> {
        Some(match self {
            Kind::MicroService => "microservice.yaml",
            Kind::Worker => "worker.yaml",
            Kind::Rds => "rds.yaml",
            Kind::DynamoDb => "dynamodb.yaml",
            Kind::S3 => "s3.yaml",
            Kind::Sqs => "sqs.yaml",
            Kind::ElastiCacheRedis => "elasticache.yaml",
            _ => return None,
        })
    }

    /// The component kind defined by a file name, e.g. `sqs.yaml` → SQS.
    pub fn from_file_name(file: &str) -> Option<Kind> {
        Kind::COMPONENTS
            .into_iter()
            .find(|k| k.file_name() == Some(file))
    }

    /// Outputs a component of this kind publishes, usable in `valueFrom.output`.
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            Kind::MicroService => &["url", "name", "arn", "taskDefinitionArn", "logGroup"],
            Kind::Worker => &["name", "arn", "taskDefinitionArn", "logGroup"],
            Kind::Rds => &["endpoint", "port", "arn", "address", "databaseName"],
            Kind::DynamoDb => &["name", "arn", "streamArn"],
            Kind::S3 => &["name", "arn", "domainName"],
            Kind::Sqs => &["url", "arn", "name", "dlqUrl", "dlqArn"],
            Kind::ElastiCacheRedis => &["endpoint", "port", "readerEndpoint", "arn"],
            Kind::Network => &["vpcId", "subnets", "securityGroups"],
            Kind::EcsCluster => &["name", "arn"],
            Kind::LoadBalancer => &["arn", "dnsName", "listenerArn"],
            Kind::ExecutionRole => &["arn", "name"],
            _ => &[],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn every_component_kind_has_a_file_name_and_outputs() {
        for kind in Kind::COMPONENTS {
            let file = kind.file_name().expect("component kinds have a file name");
            assert_eq!(Kind::from_file_name(file), Some(kind));
            assert!(!kind.outputs().is_empty(), "{kind} publishes no outputs");
        }
        assert_eq!(Kind::Stack.file_name(), None);
    }

    #[test]
    fn stack_wide_kinds_are_recorded_but_never_documents() {
        for kind in Kind::STACK_RESOURCES {
            assert_eq!(
                Kind::from_name(kind.name()),
                None,
                "{kind} is not a document"
            );
            assert_eq!(Kind::from_recorded(kind.name()), Some(kind));
            assert!(!kind.is_component() && kind.file_name().is_none());
            assert!(!kind.outputs().is_empty(), "{kind} publishes no outputs");
        }
        assert_eq!(Kind::from_recorded("Stack"), None);
        assert_eq!(Kind::from_recorded("RDS"), Some(Kind::Rds));
    }
}
