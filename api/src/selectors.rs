//! Label and field selectors: parsing the query syntax and matching objects against it. Label
//! selectors are `skiff_meta`'s (the one implementation the controllers and the node share);
//! field selectors are per kind, from `skiff_kinds::fields`.

use serde_json::Value;

use crate::error::ApiError;

/// A parsed `labelSelector`; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(skiff_meta::selector::LabelSelector);

impl LabelSelector {
    /// Parses the query syntax; a malformed selector is a 400 with Kubernetes' message.
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        skiff_meta::selector::LabelSelector::parse(input)
            .map(LabelSelector)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.matches_object(obj)
    }
}

/// A `metav1.LabelSelector` object in its query-string form (`a=b,c in (d)`, as Kubernetes'
/// `Selector.String()`); `None` if it is not a valid selector.
pub fn selector_query(sel: &Value) -> Option<String> {
    skiff_meta::selector::LabelSelector::from_json(sel)
        .ok()
        .map(|s| s.to_string())
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldRequirement {
    path: String,
    value: String,
    negate: bool,
}

/// A parsed `fieldSelector`: `a=b`, `a==b` and `a!=b` joined by commas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn parse(input: &str, kind: &skiff_kinds::Kind) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in input.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (path, value, negate) = if let Some((p, v)) = part.split_once("!=") {
                (p, v, true)
            } else if let Some((p, v)) = part.split_once("==") {
                (p, v, false)
            } else if let Some((p, v)) = part.split_once('=') {
                (p, v, false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                )));
            };
            let path = path.trim();
            if !skiff_kinds::fields::is_selectable(kind, path) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {path}"
                )));
            }
            requirements.push(FieldRequirement {
                path: path.to_string(),
                value: value.trim().to_string(),
                negate,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The single `metadata.name=X` this selector pins, if it pins one.
    pub fn exact_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.path == "metadata.name" && !r.negate)
            .map(|r| r.value.as_str())
    }

    pub fn matches(&self, kind: &skiff_kinds::Kind, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = skiff_kinds::fields::value(kind, obj, &r.path).unwrap_or_default();
            (actual == r.value) != r.negate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}})
    }

    #[test]
    fn label_operators() {
        let o = obj(json!({"app": "web", "tier": "front", "n": "5"}));
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=db", false),
            ("app in (db, web)", true),
            ("app notin (db,web)", false),
            ("missing notin (a)", true),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier=front", true),
            ("app=web,tier in (back)", false),
            ("n>3", true),
            ("n<3", false),
        ];
        for (sel, want) in cases {
            let parsed = LabelSelector::parse(sel).unwrap();
            assert_eq!(parsed.matches(&o), want, "selector {sel:?}");
        }
    }

    #[test]
    fn label_parse_errors() {
        for bad in ["app in web", "-app=web", "app=we b!", "a/=b", "n>x"] {
            let err = LabelSelector::parse(bad).unwrap_err();
            assert_eq!(err.code, 400, "{bad}");
        }
    }
}
