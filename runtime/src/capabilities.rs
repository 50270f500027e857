//! Guest capabilities a container is given only when it declares them (`wasi:config`,
//! `wasi:keyvalue`), beyond the interfaces every container gets (wasi:cli, io, clocks, random,
//! filesystem, sockets, incoming and outgoing wasi:http).

use std::fmt;

/// Where a container's `wasi:config/store` values come from: the files of the volume mounted
/// here (file name = key, contents = value), read again whenever the node refreshes the volume.
pub const CONFIG_MOUNT_PATH: &str = "/etc/skiff/config";

/// Where a container's `wasi:keyvalue` buckets live: the directory mounted here (for durable
/// data, a PersistentVolumeClaim); without such a mount, the pod's own scratch directory, which
/// goes with the pod.
pub const KEYVALUE_MOUNT_PATH: &str = "/var/lib/skiff/keyvalue";

/// One capability a container may declare, named by its WASI package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// `wasi:config/store`: read-only configuration values.
    Config,
    /// `wasi:keyvalue/{store,atomics,batch}`: durable buckets of keys and values.
    KeyValue,
}

impl Capability {
    /// Every capability, in a stable order.
    pub const ALL: [Capability; 2] = [Capability::Config, Capability::KeyValue];

    /// The WASI package name, as declared (`wasi:config`).
    pub fn package(self) -> &'static str {
        match self {
            Capability::Config => "wasi:config",
            Capability::KeyValue => "wasi:keyvalue",
        }
    }

    /// The capability a package name (`wasi:keyvalue`, or with a version
    /// `wasi:keyvalue@0.2.0-draft`) names.
    pub fn from_package(name: &str) -> Option<Capability> {
        let name = name.split('@').next().unwrap_or(name);
        Capability::ALL.into_iter().find(|c| c.package() == name)
    }

    /// The capability whose package an import (`wasi:keyvalue/store@0.2.0-draft`) belongs to,
    /// if it is one that must be declared.
    pub fn of_import(import: &str) -> Option<Capability> {
        let package = import.split(['/', '@']).next().unwrap_or(import);
        Capability::from_package(package)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.package())
    }
}

/// The capabilities a container declared. Empty by default: nothing beyond the default set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `wasi:config` was declared.
    pub config: bool,
    /// `wasi:keyvalue` was declared.
    pub keyvalue: bool,
}

/// A declared capability this runtime does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {name:?} (known: {known})")]
pub struct UnknownCapability {
    /// The name as declared.
    pub name: String,
    /// The known package names, comma-separated.
    pub known: String,
}

impl Capabilities {
    /// Parses a comma-separated list of WASI package names (`wasi:config, wasi:keyvalue`);
    /// blanks are ignored, an unknown name is an error naming it.
    pub fn parse(list: &str) -> Result<Capabilities, UnknownCapability> {
        let mut caps = Capabilities::default();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match Capability::from_package(name) {
                Some(c) => caps.insert(c),
                None => {
                    return Err(UnknownCapability {
                        name: name.to_string(),
                        known: Capability::ALL.map(Capability::package).join(", "),
                    });
                }
            }
        }
        Ok(caps)
    }

    /// Adds a capability.
    pub fn insert(&mut self, c: Capability) {
        match c {
            Capability::Config => self.config = true,
            Capability::KeyValue => self.keyvalue = true,
        }
    }

    /// Whether `c` was declared.
    pub fn contains(&self, c: Capability) -> bool {
        match c {
            Capability::Config => self.config,
            Capability::KeyValue => self.keyvalue,
        }
    }

    /// The first of `imports` whose capability was not declared, with that capability.
    pub fn first_undeclared<'a>(
        &self,
        imports: impl IntoIterator<Item = &'a str>,
    ) -> Option<(&'a str, Capability)> {
        imports.into_iter().find_map(|i| {
            Capability::of_import(i)
                .filter(|c| !self.contains(*c))
                .map(|c| (i, c))
        })
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = Capability::ALL
            .into_iter()
            .filter(|c| self.contains(*c))
            .map(Capability::package)
            .collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_refuses_unknown_names() {
        let caps = Capabilities::parse(" wasi:config ,wasi:keyvalue@0.2.0-draft,").unwrap();
        assert!(caps.config && caps.keyvalue);
        assert_eq!(caps.to_string(), "wasi:config,wasi:keyvalue");
        assert_eq!(Capabilities::parse("").unwrap(), Capabilities::default());
        let err = Capabilities::parse("wasi:config,wasi:blobstore").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown capability \"wasi:blobstore\" (known: wasi:config, wasi:keyvalue)"
        );
    }

    #[test]
    fn finds_the_first_undeclared_import() {
        let caps = Capabilities::parse("wasi:config").unwrap();
        let imports = [
            "wasi:cli/environment@0.2.0",
            "wasi:config/store@0.2.0-draft",
            "wasi:keyvalue/store@0.2.0-draft",
        ];
        assert_eq!(
            caps.first_undeclared(imports),
            Some(("wasi:keyvalue/store@0.2.0-draft", Capability::KeyValue))
        );
        assert_eq!(
            Capabilities::parse("wasi:config,wasi:keyvalue")
                .unwrap()
                .first_undeclared(imports),
            None
        );
    }
}
