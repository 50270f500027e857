//! Quantity target: Kubernetes' resource quantities (`100m`, `1.5Gi`, `2e3`), from pod specs,
//! quotas and limit ranges.

use skiff_meta::quantity::Quantity;

use crate::input::text;

/// A quantity prints in canonical form, which parses back to the same quantity and prints the
/// same again.
#[test]
fn quantity_target() {
    bolero::check!(name = "quantity").for_each(|input: &[u8]| {
        let input = text(input);
        if let Ok(q) = Quantity::parse(&input) {
            let printed = q.to_string();
            let again = Quantity::parse(&printed)
                .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?} does not parse: {e}"));
            assert_eq!(again.to_string(), printed, "{input:?}");
            let _ = (q.milli_i64(), q.value_i64());
        }
    });
}
