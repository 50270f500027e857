//! Selector targets: label selectors (shared by the API server, controllers and node) and the
//! API server's field selectors.

use skiff_meta::selector::LabelSelector;

use crate::input::text;

/// A label selector prints (as Kubernetes' `Selector.String()`) and parses back to itself.
#[test]
fn label_selector_target() {
    bolero::check!(name = "label_selector").for_each(|input: &[u8]| {
        let input = text(input);
        if let Ok(selector) = LabelSelector::parse(&input) {
            let printed = selector.to_string();
            let again = LabelSelector::parse(&printed)
                .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?} does not parse: {e}"));
            assert_eq!(again, selector, "{input:?} printed as {printed:?}");
            let _ = skiff_api::selectors::LabelSelector::parse(&input).unwrap();
        }
    });
}

/// Field selectors for a namespaced and a cluster-scoped kind: no panic on any text.
#[test]
fn field_selector_target() {
    let pods = skiff_kinds::find("", "v1", "pods").expect("pods kind");
    let nodes = skiff_kinds::find("", "v1", "nodes").expect("nodes kind");
    bolero::check!(name = "field_selector").for_each(|input: &[u8]| {
        let input = text(input);
        let _ = skiff_api::selectors::FieldSelector::parse(&input, pods);
        let _ = skiff_api::selectors::FieldSelector::parse(&input, nodes);
    });
}
