//! The controller manager's informers: one per kind, and none for a controller switched off.

use skiff_controllers::{Informers, Options, spawn_controllers};
use skiff_testkit::inproc::InProcess;

fn kinds(client: &kube::Client, opts: Options) -> Vec<String> {
    let mut informers = Informers::new(client.clone());
    let handles = spawn_controllers(&mut informers, client.clone(), opts);
    for h in handles {
        h.abort();
    }
    informers.kinds()
}

#[tokio::test]
async fn informers_are_created_once_per_kind_and_only_for_running_controllers() {
    let api = InProcess::start().await.unwrap();
    let all = kinds(&api.client, Options::default());
    assert_eq!(
        all,
        [
            "CertificateSigningRequest",
            "ClusterRole",
            "ConfigMap",
            "CronJob",
            "CustomResourceDefinition",
            "DaemonSet",
            "Deployment",
            "EndpointSlice",
            "Endpoints",
            "HorizontalPodAutoscaler",
            "Job",
            "Lease/kube-node-lease",
            "Node",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "Pod",
            "PodDisruptionBudget",
            "ReplicaSet",
            "ReplicationController",
            "ResourceQuota",
            "RuntimeClass",
            "Secret",
            "Service",
            "StatefulSet",
            "StorageClass",
        ]
    );

    let mut only_rs = Options {
        scheduler: false,
        ..Options::default()
    };
    only_rs.select("replicaset").unwrap();
    assert_eq!(kinds(&api.client, only_rs), ["Pod", "ReplicaSet"]);

    let mut none = Options {
        scheduler: false,
        ..Options::default()
    };
    none.select("*,-replicaset,-replicationcontroller,-deployment,-garbagecollector,-nodelifecycle,-disruption,-job,-daemonset,-statefulset,-cronjob,-endpointslice,-endpoint,-scaletozero,-resourcequota,-csrapproving,-csrsigning,-clusterrole-aggregation,-persistentvolume-binder,-pvc-protection,-pv-protection,-serviceaccount,-root-ca-cert-publisher,-horizontalpodautoscaling")
        .unwrap();
    assert_eq!(none.controllers.iter().collect::<Vec<_>>(), ["namespace"]);
    assert!(
        kinds(&api.client, none).is_empty(),
        "the namespace controller watches through its own kube-runtime Controller"
    );
}
