//! The object envelope: `apiVersion`, `kind`, `metadata`, `spec`, `status`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::kinds::*;
use crate::meta::{Conditions, ObjectMeta};

/// The one API version Capstan serves.
pub const API_VERSION: &str = "capstan.dev/v1alpha1";

/// One of the six kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Kind {
    Cluster,
    MachineClass,
    MachineDeployment,
    MachineSet,
    Machine,
    MachineHealthCheck,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Cluster,
        Kind::MachineClass,
        Kind::MachineDeployment,
        Kind::MachineSet,
        Kind::Machine,
        Kind::MachineHealthCheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cluster => "Cluster",
            Kind::MachineClass => "MachineClass",
            Kind::MachineDeployment => "MachineDeployment",
            Kind::MachineSet => "MachineSet",
            Kind::Machine => "Machine",
            Kind::MachineHealthCheck => "MachineHealthCheck",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one object: namespace, owning cluster, kind, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ObjectKey {
    pub namespace: String,
    pub cluster: String,
    pub kind: Kind,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: &str, cluster: &str, kind: Kind, name: &str) -> Self {
        ObjectKey {
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
            kind,
            name: name.to_string(),
        }
    }

    /// The key of the cluster this object belongs to.
    pub fn cluster_key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.cluster, Kind::Cluster, &self.cluster)
    }

    /// Another object in the same cluster.
    pub fn sibling(&self, kind: Kind, name: &str) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.cluster, kind, name)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// An object of one kind: metadata, the desired `spec`, the observed `status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    schemars(
        bound = "S: schemars::JsonSchema + Default + Serialize, T: schemars::JsonSchema + Default + Serialize"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct Resource<S, T> {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: S,
    #[serde(default)]
    pub status: T,
}

pub type Cluster = Resource<ClusterSpec, ClusterStatus>;
pub type MachineClass = Resource<MachineClassSpec, MachineClassStatus>;
pub type MachineDeployment = Resource<MachineDeploymentSpec, MachineDeploymentStatus>;
pub type MachineSet = Resource<MachineSetSpec, MachineSetStatus>;
pub type Machine = Resource<MachineSpec, MachineStatus>;
pub type MachineHealthCheck = Resource<MachineHealthCheckSpec, MachineHealthCheckStatus>;

/// Any object.
// Objects are moved around whole and a Machine is the common case: boxing every
// variant would add an allocation per object for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Cluster(Cluster),
    MachineClass(MachineClass),
    MachineDeployment(MachineDeployment),
    MachineSet(MachineSet),
    Machine(Machine),
    MachineHealthCheck(MachineHealthCheck),
}

/// Calls `$body` with `$r` bound to the inner `Resource`, whatever the kind.
#[macro_export]
macro_rules! with_resource {
    ($obj:expr, $r:ident => $body:expr) => {
        match $obj {
            $crate::Object::Cluster($r) => $body,
            $crate::Object::MachineClass($r) => $body,
            $crate::Object::MachineDeployment($r) => $body,
            $crate::Object::MachineSet($r) => $body,
            $crate::Object::Machine($r) => $body,
            $crate::Object::MachineHealthCheck($r) => $body,
        }
    };
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Cluster(_) => Kind::Cluster,
            Object::MachineClass(_) => Kind::MachineClass,
            Object::MachineDeployment(_) => Kind::MachineDeployment,
            Object::MachineSet(_) => Kind::MachineSet,
            Object::Machine(_) => Kind::Machine,
            Object::MachineHealthCheck(_) => Kind::MachineHealthCheck,
        }
    }

    /// An empty object of `key`'s kind carrying only its name, namespace and cluster:
    /// what a reconciler reports on when the stored spec cannot be read.
    pub fn blank(key: &ObjectKey) -> Object {
        let metadata = ObjectMeta {
            name: key.name.clone(),
            namespace: key.namespace.clone(),
            ..ObjectMeta::default()
        };
        let mut object = match key.kind {
            Kind::Cluster => Object::Cluster(Resource {
                metadata,
                ..Default::default()
            }),
            Kind::MachineClass => Object::MachineClass(Resource {
                metadata,
                ..Default::default()
            }),
            Kind::MachineDeployment => Object::MachineDeployment(Resource {
                metadata,
                ..Default::default()
            }),
            Kind::MachineSet => Object::MachineSet(Resource {
                metadata,
                ..Default::default()
            }),
            Kind::Machine => Object::Machine(Resource {
                metadata,
                ..Default::default()
            }),
            Kind::MachineHealthCheck => Object::MachineHealthCheck(Resource {
                metadata,
                ..Default::default()
            }),
        };
        object.set_cluster_name(&key.cluster);
        object
    }

    fn set_cluster_name(&mut self, cluster: &str) {
        let name = cluster.to_string();
        match self {
            Object::Cluster(_) => {}
            Object::MachineClass(r) => r.spec.cluster_name = name,
            Object::MachineDeployment(r) => r.spec.cluster_name = name,
            Object::MachineSet(r) => r.spec.cluster_name = name,
            Object::Machine(r) => r.spec.cluster_name = name,
            Object::MachineHealthCheck(r) => r.spec.cluster_name = name,
        }
    }

    pub fn as_cluster(&self) -> Option<&Cluster> {
        if let Object::Cluster(r) = self {
            Some(r)
        } else {
            None
        }
    }
    pub fn as_machine_class(&self) -> Option<&MachineClass> {
        if let Object::MachineClass(r) = self {
            Some(r)
        } else {
            None
        }
    }
    pub fn as_machine_deployment(&self) -> Option<&MachineDeployment> {
        if let Object::MachineDeployment(r) = self {
            Some(r)
        } else {
            None
        }
    }
    pub fn as_machine_set(&self) -> Option<&MachineSet> {
        if let Object::MachineSet(r) = self {
            Some(r)
        } else {
            None
        }
    }
    pub fn as_machine(&self) -> Option<&Machine> {
        if let Object::Machine(r) = self {
            Some(r)
        } else {
            None
        }
    }
    pub fn as_health_check(&self) -> Option<&MachineHealthCheck> {
        if let Object::MachineHealthCheck(r) = self {
            Some(r)
        } else {
            None
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        with_resource!(self, r => &r.metadata)
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        with_resource!(self, r => &mut r.metadata)
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// The cluster the object belongs to: itself for a Cluster, `spec.clusterName` otherwise.
    pub fn cluster_name(&self) -> &str {
        match self {
            Object::Cluster(r) => &r.metadata.name,
            Object::MachineClass(r) => &r.spec.cluster_name,
            Object::MachineDeployment(r) => &r.spec.cluster_name,
            Object::MachineSet(r) => &r.spec.cluster_name,
            Object::Machine(r) => &r.spec.cluster_name,
            Object::MachineHealthCheck(r) => &r.spec.cluster_name,
        }
    }

    pub fn key(&self) -> ObjectKey {
        let m = self.metadata();
        ObjectKey::new(&m.namespace, self.cluster_name(), self.kind(), &m.name)
    }

    pub fn conditions(&self) -> &Conditions {
        match self {
            Object::Cluster(r) => &r.status.conditions,
            Object::MachineClass(r) => &r.status.conditions,
            Object::MachineDeployment(r) => &r.status.conditions,
            Object::MachineSet(r) => &r.status.conditions,
            Object::Machine(r) => &r.status.conditions,
            Object::MachineHealthCheck(r) => &r.status.conditions,
        }
    }

    pub fn conditions_mut(&mut self) -> &mut Conditions {
        match self {
            Object::Cluster(r) => &mut r.status.conditions,
            Object::MachineClass(r) => &mut r.status.conditions,
            Object::MachineDeployment(r) => &mut r.status.conditions,
            Object::MachineSet(r) => &mut r.status.conditions,
            Object::Machine(r) => &mut r.status.conditions,
            Object::MachineHealthCheck(r) => &mut r.status.conditions,
        }
    }

    pub fn observed_generation_mut(&mut self) -> &mut Option<i64> {
        match self {
            Object::Cluster(r) => &mut r.status.observed_generation,
            Object::MachineClass(r) => &mut r.status.observed_generation,
            Object::MachineDeployment(r) => &mut r.status.observed_generation,
            Object::MachineSet(r) => &mut r.status.observed_generation,
            Object::Machine(r) => &mut r.status.observed_generation,
            Object::MachineHealthCheck(r) => &mut r.status.observed_generation,
        }
    }

    /// The spec alone, as JSON (what the desired item stores and the spec hash covers).
    pub fn spec_json(&self) -> serde_json::Value {
        with_resource!(self, r => serde_json::to_value(&r.spec).unwrap_or(serde_json::Value::Null))
    }

    /// The status alone, as JSON (what the observed item stores).
    pub fn status_json(&self) -> serde_json::Value {
        with_resource!(self, r => serde_json::to_value(&r.status).unwrap_or(serde_json::Value::Null))
    }

    /// The whole object as JSON, with `apiVersion` and `kind` first.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("apiVersion".into(), API_VERSION.into());
        map.insert("kind".into(), self.kind().as_str().into());
        let body = with_resource!(self, r => serde_json::to_value(r));
        if let Ok(serde_json::Value::Object(fields)) = body {
            map.extend(fields);
        }
        serde_json::Value::Object(map)
    }
}

impl Serialize for Object {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}
