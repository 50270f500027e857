//! Label selectors: the query syntax (`app=web,tier in (a,b),!old`), `metav1.LabelSelector`
//! objects (typed or JSON), matching, and the string forms Kubernetes prints.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

/// Why a selector was refused; the text is what Kubernetes answers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

/// A requirement's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value` (also `matchLabels`).
    Equals,
    /// `key==value`.
    DoubleEquals,
    /// `key!=value`.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`.
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>5` (integer values only).
    GreaterThan,
    /// `key<5`.
    LessThan,
}

/// One `key op values` term.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and without duplicates.
    pub values: Vec<String>,
}

impl Requirement {
    /// A checked requirement, as Kubernetes' `NewRequirement`.
    pub fn new(
        key: &str,
        operator: Operator,
        values: impl IntoIterator<Item = String>,
    ) -> Result<Self, SelectorError> {
        check_key(key)?;
        let mut values: Vec<String> = values.into_iter().collect();
        values.sort();
        values.dedup();
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(SelectorError(
                    "for 'in', 'notin' operators, values set can't be empty".into(),
                ));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                return Err(SelectorError(
                    "exact-match compatibility requires one single value".into(),
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError(
                    "values set must be empty for exists and does not exist".into(),
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(SelectorError(
                        "for 'Gt', 'Lt' operators, exactly one value is required".into(),
                    ));
                }
                if values[0].parse::<i64>().is_err() {
                    return Err(SelectorError(format!(
                        "for 'Gt', 'Lt' operators, the value must be an integer: {:?}",
                        values[0]
                    )));
                }
                return Ok(Requirement {
                    key: key.into(),
                    operator,
                    values,
                });
            }
            _ => {}
        }
        for v in &values {
            check_value(v)?;
        }
        Ok(Requirement {
            key: key.into(),
            operator,
            values,
        })
    }

    /// Whether a label value (or its absence) satisfies this requirement.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        let int = |v: Option<&str>| v.and_then(|v| v.parse::<i64>().ok());
        let bound = self.values.first().and_then(|v| v.parse::<i64>().ok());
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(has),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !has(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan => matches!((int(value), bound), (Some(v), Some(b)) if v > b),
            Operator::LessThan => matches!((int(value), bound), (Some(v), Some(b)) if v < b),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let first = self.values.first().map(String::as_str).unwrap_or_default();
        match self.operator {
            Operator::Equals => write!(f, "{key}={first}"),
            Operator::DoubleEquals => write!(f, "{key}=={first}"),
            Operator::NotEquals => write!(f, "{key}!={first}"),
            Operator::In => write!(f, "{key} in ({})", self.values.join(",")),
            Operator::NotIn => write!(f, "{key} notin ({})", self.values.join(",")),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::GreaterThan => write!(f, "{key}>{first}"),
            Operator::LessThan => write!(f, "{key}<{first}"),
        }
    }
}

/// A conjunction of requirements; the empty selector matches everything. (A *missing*
/// `metav1.LabelSelector` matches nothing: callers hold that as `Option<LabelSelector>`.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    /// Sorted by key, as Kubernetes keeps them.
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector of the given requirements (sorted by key).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements }
    }

    /// Parses the query syntax of `?labelSelector=` and `kubectl -l`.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(input) {
            let part = part.trim();
            if !part.is_empty() {
                requirements.push(parse_requirement(part)?);
            }
        }
        Ok(Self::from_requirements(requirements))
    }

    /// A typed `metav1.LabelSelector`, as Kubernetes' `LabelSelectorAsSelector`.
    pub fn from_k8s(selector: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(k, Operator::Equals, [v.clone()])?);
        }
        for e in selector.match_expressions.iter().flatten() {
            let op = expression_operator(&e.operator)?;
            requirements.push(Requirement::new(
                &e.key,
                op,
                e.values.iter().flatten().cloned(),
            )?);
        }
        Ok(Self::from_requirements(requirements))
    }

    /// A `metav1.LabelSelector` as JSON (`{"matchLabels":…,"matchExpressions":[…]}`).
    pub fn from_json(selector: &Value) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                let v = v.as_str().ok_or_else(|| {
                    SelectorError(format!("matchLabels[{k}]: value must be a string"))
                })?;
                requirements.push(Requirement::new(k, Operator::Equals, [v.to_string()])?);
            }
        }
        let exprs = selector.get("matchExpressions").and_then(Value::as_array);
        for e in exprs.into_iter().flatten() {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let op = expression_operator(
                e.get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            )?;
            let values = e.get("values").and_then(Value::as_array);
            let values = values
                .into_iter()
                .flatten()
                .map(|v| v.as_str().map(str::to_string).unwrap_or_default());
            requirements.push(Requirement::new(key, op, values)?);
        }
        Ok(Self::from_requirements(requirements))
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Whether the labels that `get` looks up satisfy every requirement.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| r.matches(get(&r.key)))
    }

    /// Whether an object's `metadata.labels` (JSON) satisfy every requirement.
    pub fn matches_object(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        self.matches_with(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }
}

/// Kubernetes' `Selector.String()`: requirements joined by commas in key order.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// A `metav1.LabelSelector` as kubectl prints it (`metav1.FormatLabelSelector`): `<none>` when
/// absent or empty, `<error>` when invalid.
pub fn format_label_selector(selector: Option<&metav1::LabelSelector>) -> String {
    match selector.map(LabelSelector::from_k8s) {
        None => "<none>".into(),
        Some(Err(_)) => "<error>".into(),
        Some(Ok(s)) if s.is_empty() => "<none>".into(),
        Some(Ok(s)) => s.to_string(),
    }
}

/// [`format_label_selector`] for a selector given as JSON.
pub fn format_label_selector_json(selector: Option<&Value>) -> String {
    match selector
        .filter(|s| s.is_object())
        .map(LabelSelector::from_json)
    {
        None => "<none>".into(),
        Some(Err(_)) => "<error>".into(),
        Some(Ok(s)) if s.is_empty() => "<none>".into(),
        Some(Ok(s)) => s.to_string(),
    }
}

fn expression_operator(op: &str) -> Result<Operator, SelectorError> {
    Ok(match op {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(SelectorError(format!(
                "{other:?} is not a valid label selector operator"
            )));
        }
    })
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    if let Some(key) = part.strip_prefix('!') {
        return Requirement::new(key.trim(), Operator::DoesNotExist, []);
    }
    for (token, op) in [(" notin ", Operator::NotIn), (" in ", Operator::In)] {
        if let Some(idx) = part.find(token) {
            let key = part[..idx].trim();
            let rest = part[idx + token.len()..].trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| {
                    SelectorError(format!("{part:?}: expected a parenthesised list of values"))
                })?;
            let values = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty());
            return Requirement::new(key, op, values);
        }
    }
    for (token, op) in [
        ("!=", Operator::NotEquals),
        ("==", Operator::DoubleEquals),
        ("=", Operator::Equals),
        (">", Operator::GreaterThan),
        ("<", Operator::LessThan),
    ] {
        if let Some(idx) = part.find(token) {
            let key = part[..idx].trim();
            let value = part[idx + token.len()..].trim();
            return Requirement::new(key, op, [value.to_string()]);
        }
    }
    Requirement::new(part.trim(), Operator::Exists, [])
}

fn check_key(key: &str) -> Result<(), SelectorError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty()
            || p.len() > 253
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
    {
        return Err(SelectorError(format!(
            "invalid label key {key:?}: prefix part must be a DNS subdomain"
        )));
    }
    if name.is_empty() || name.len() > 63 || !is_label_token(name) {
        return Err(SelectorError(format!(
            "invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), SelectorError> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 || !is_label_token(value) {
        return Err(SelectorError(format!(
            "invalid label value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )));
    }
    Ok(())
}

fn is_label_token(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_syntax_matches_like_kubernetes() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=db", false),
            ("app in (db, web)", true),
            ("app notin (db,web)", false),
            ("missing notin (a)", true),
            ("missing!=x", true),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier=front", true),
            ("app=web,tier in (back)", false),
            ("n>3", true),
            ("n<3", false),
            ("app>3", false),
        ];
        for (sel, want) in cases {
            let parsed = LabelSelector::parse(sel).unwrap();
            assert_eq!(parsed.matches(&l), want, "selector {sel:?}");
        }
    }

    #[test]
    fn bad_query_syntax_is_refused() {
        for bad in [
            "app in web",
            "-app=web",
            "app=we b!",
            "a/=b",
            "n>x",
            "app in ()",
        ] {
            let err = LabelSelector::parse(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("unable to parse requirement: "),
                "{bad}"
            );
        }
    }

    #[test]
    fn typed_and_json_selectors_agree() {
        let json = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a", "a"]},
                {"key": "old", "operator": "DoesNotExist"},
                {"key": "env", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["x"]}
            ]
        });
        let typed: metav1::LabelSelector = serde_json::from_value(json.clone()).unwrap();
        let a = LabelSelector::from_json(&json).unwrap();
        let b = LabelSelector::from_k8s(&typed).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.to_string(),
            "app=web,env,!old,tier in (a,b),zone notin (x)"
        );
        assert!(a.matches(&labels(&[("app", "web"), ("tier", "a"), ("env", "")])));
        assert!(!a.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(a.matches_object(
            &json!({"metadata": {"labels": {"app": "web", "tier": "b", "env": "p"}}})
        ));
    }

    #[test]
    fn printer_form_of_selectors() {
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(
            format_label_selector(Some(&metav1::LabelSelector::default())),
            "<none>"
        );
        assert_eq!(format_label_selector_json(Some(&json!({}))), "<none>");
        assert_eq!(
            format_label_selector_json(Some(
                &json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})
            )),
            "<error>"
        );
        assert_eq!(
            format_label_selector_json(Some(&json!({"matchLabels": {"b": "2", "a": "1"}}))),
            "a=1,b=2"
        );
    }

    #[test]
    fn expression_rules_follow_new_requirement() {
        for bad in [
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
            json!({"matchLabels": {"a": "not valid!"}}),
        ] {
            assert!(LabelSelector::from_json(&bad).is_err(), "{bad}");
        }
    }
}
