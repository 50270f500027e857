//! What the node tells the scheduler about the WIT interfaces its components can import: the
//! union of its backends' answers (each probed from the backend's linker, see
//! `skiff_runtime::PodRuntime::interfaces`), published in the Node annotation
//! `skiff.dev/interfaces` as a JSON array, at registration and again on every re-registration.

use std::collections::BTreeSet;

use skiff_runtime::Runtimes;

/// The interfaces any of the node's backends provides, sorted, without repeats.
pub(crate) fn of(runtimes: &Runtimes) -> Vec<String> {
    let set: BTreeSet<String> = runtimes
        .iter()
        .flat_map(|b| b.runtime.interfaces())
        .collect();
    set.into_iter().collect()
}

/// The annotation's value.
pub(crate) fn annotation(interfaces: &[String]) -> String {
    serde_json::to_string(interfaces).unwrap_or_else(|_| "[]".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_annotation_is_a_json_array_the_scheduler_reads() {
        let names = vec![
            "wasi:http/types@0.2.12".to_string(),
            "wasi:keyvalue/store@0.2.0-draft".to_string(),
        ];
        let value = annotation(&names);
        assert_eq!(skiff_meta::wit::parse_list(&value).unwrap(), names);
        assert_eq!(annotation(&[]), "[]");
    }
}
