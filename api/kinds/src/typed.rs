//! The k8s-openapi type behind each kind, reached through one dispatch macro.

/// Runs `$body` with the type alias `$t` bound to the k8s-openapi type named by `$openapi`
/// (an OpenAPI definition name such as `"io.k8s.api.core.v1.Pod"`); evaluates to `None` for
/// unknown names and `Some(body)` otherwise.
macro_rules! with_type {
    ($openapi:expr, $t:ident => $body:expr) => {{
        use k8s_openapi::api as a;
        match $openapi {
            "io.k8s.api.core.v1.ConfigMap" => {
                type $t = a::core::v1::ConfigMap;
                Some($body)
            }
            "io.k8s.api.core.v1.Endpoints" => {
                type $t = a::core::v1::Endpoints;
                Some($body)
            }
            "io.k8s.api.core.v1.Event" => {
                type $t = a::core::v1::Event;
                Some($body)
            }
            "io.k8s.api.core.v1.LimitRange" => {
                type $t = a::core::v1::LimitRange;
                Some($body)
            }
            "io.k8s.api.core.v1.Namespace" => {
                type $t = a::core::v1::Namespace;
                Some($body)
            }
            "io.k8s.api.core.v1.Node" => {
                type $t = a::core::v1::Node;
                Some($body)
            }
            "io.k8s.api.core.v1.PersistentVolumeClaim" => {
                type $t = a::core::v1::PersistentVolumeClaim;
                Some($body)
            }
            "io.k8s.api.core.v1.PersistentVolume" => {
                type $t = a::core::v1::PersistentVolume;
                Some($body)
            }
            "io.k8s.api.core.v1.Pod" => {
                type $t = a::core::v1::Pod;
                Some($body)
            }
            "io.k8s.api.core.v1.ReplicationController" => {
                type $t = a::core::v1::ReplicationController;
                Some($body)
            }
            "io.k8s.api.core.v1.ResourceQuota" => {
                type $t = a::core::v1::ResourceQuota;
                Some($body)
            }
            "io.k8s.api.core.v1.Secret" => {
                type $t = a::core::v1::Secret;
                Some($body)
            }
            "io.k8s.api.core.v1.ServiceAccount" => {
                type $t = a::core::v1::ServiceAccount;
                Some($body)
            }
            "io.k8s.api.core.v1.Service" => {
                type $t = a::core::v1::Service;
                Some($body)
            }
            "io.k8s.api.apps.v1.ControllerRevision" => {
                type $t = a::apps::v1::ControllerRevision;
                Some($body)
            }
            "io.k8s.api.apps.v1.DaemonSet" => {
                type $t = a::apps::v1::DaemonSet;
                Some($body)
            }
            "io.k8s.api.apps.v1.Deployment" => {
                type $t = a::apps::v1::Deployment;
                Some($body)
            }
            "io.k8s.api.apps.v1.ReplicaSet" => {
                type $t = a::apps::v1::ReplicaSet;
                Some($body)
            }
            "io.k8s.api.apps.v1.StatefulSet" => {
                type $t = a::apps::v1::StatefulSet;
                Some($body)
            }
            "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler" => {
                type $t = a::autoscaling::v1::HorizontalPodAutoscaler;
                Some($body)
            }
            "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler" => {
                type $t = a::autoscaling::v2::HorizontalPodAutoscaler;
                Some($body)
            }
            "io.k8s.api.batch.v1.CronJob" => {
                type $t = a::batch::v1::CronJob;
                Some($body)
            }
            "io.k8s.api.batch.v1.Job" => {
                type $t = a::batch::v1::Job;
                Some($body)
            }
            "io.k8s.api.coordination.v1.Lease" => {
                type $t = a::coordination::v1::Lease;
                Some($body)
            }
            "io.k8s.api.discovery.v1.EndpointSlice" => {
                type $t = a::discovery::v1::EndpointSlice;
                Some($body)
            }
            "io.k8s.api.events.v1.Event" => {
                type $t = a::events::v1::Event;
                Some($body)
            }
            "io.k8s.api.networking.v1.IngressClass" => {
                type $t = a::networking::v1::IngressClass;
                Some($body)
            }
            "io.k8s.api.networking.v1.Ingress" => {
                type $t = a::networking::v1::Ingress;
                Some($body)
            }
            "io.k8s.api.storage.v1.StorageClass" => {
                type $t = a::storage::v1::StorageClass;
                Some($body)
            }
            "io.k8s.api.networking.v1.NetworkPolicy" => {
                type $t = a::networking::v1::NetworkPolicy;
                Some($body)
            }
            "io.k8s.api.node.v1.RuntimeClass" => {
                type $t = a::node::v1::RuntimeClass;
                Some($body)
            }
            "io.k8s.api.scheduling.v1.PriorityClass" => {
                type $t = a::scheduling::v1::PriorityClass;
                Some($body)
            }
            "io.k8s.api.policy.v1.PodDisruptionBudget" => {
                type $t = a::policy::v1::PodDisruptionBudget;
                Some($body)
            }
            "io.k8s.api.rbac.v1.ClusterRoleBinding" => {
                type $t = a::rbac::v1::ClusterRoleBinding;
                Some($body)
            }
            "io.k8s.api.rbac.v1.ClusterRole" => {
                type $t = a::rbac::v1::ClusterRole;
                Some($body)
            }
            "io.k8s.api.rbac.v1.RoleBinding" => {
                type $t = a::rbac::v1::RoleBinding;
                Some($body)
            }
            "io.k8s.api.core.v1.PodTemplate" => {
                type $t = a::core::v1::PodTemplate;
                Some($body)
            }
            "io.k8s.api.authentication.v1.SelfSubjectReview" => {
                type $t = a::authentication::v1::SelfSubjectReview;
                Some($body)
            }
            "io.k8s.api.authentication.v1.TokenReview" => {
                type $t = a::authentication::v1::TokenReview;
                Some($body)
            }
            "io.k8s.api.authorization.v1.LocalSubjectAccessReview" => {
                type $t = a::authorization::v1::LocalSubjectAccessReview;
                Some($body)
            }
            "io.k8s.api.authorization.v1.SelfSubjectAccessReview" => {
                type $t = a::authorization::v1::SelfSubjectAccessReview;
                Some($body)
            }
            "io.k8s.api.authorization.v1.SelfSubjectRulesReview" => {
                type $t = a::authorization::v1::SelfSubjectRulesReview;
                Some($body)
            }
            "io.k8s.api.authorization.v1.SubjectAccessReview" => {
                type $t = a::authorization::v1::SubjectAccessReview;
                Some($body)
            }
            "io.k8s.api.certificates.v1.CertificateSigningRequest" => {
                type $t = a::certificates::v1::CertificateSigningRequest;
                Some($body)
            }
            "io.k8s.api.rbac.v1.Role" => {
                type $t = a::rbac::v1::Role;
                Some($body)
            }
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition" => {
                type $t = k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
                Some($body)
            }
            _ => None,
        }
    }};
}

pub(crate) use with_type;

/// Decodes `obj` into the kind's typed struct and serializes it back: the round trip keeps exactly
/// the fields the type knows. `None` for a kind without a type.
pub(crate) fn round_trip(
    openapi_type: &str,
    obj: &serde_json::Value,
) -> Option<Result<serde_json::Value, serde_json::Error>> {
    fn go<T: serde::de::DeserializeOwned + serde::Serialize>(
        obj: &serde_json::Value,
    ) -> Result<serde_json::Value, serde_json::Error> {
        let typed: T = serde_json::from_value(obj.clone())?;
        serde_json::to_value(typed)
    }
    with_type!(openapi_type, T => go::<T>(obj))
}
