//! Strategic merge patch as the API server applies it: per-field list strategies and the
//! `$patch`, `$setElementOrder/`, `$retainKeys` and `$deleteFromPrimitiveList/` directives.

use serde_json::{Map, Value};

use crate::schema::{Child, Ctx, ListStrategy};
use crate::{Error, Result};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

pub(crate) fn strategic_merge_patch(doc: &Value, patch: &Value, type_name: &str) -> Result<Value> {
    let Value::Object(patch) = patch else {
        return Err(invalid("strategic merge patch must be a JSON object"));
    };
    let original = match doc {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => {
            return Err(Error::Invalid(
                "the object to patch is not a JSON object".into(),
            ));
        }
    };
    let merged = merge_map(original, patch.clone(), Ctx::for_type(type_name))?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidPatch(msg.into())
}

/// Merges `patch` into `original`. `None` means the map is deleted (`$patch: delete`).
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ctx: Ctx,
) -> Result<Option<Map<String, Value>>> {
    if let Some(directive) = patch.shift_remove(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return merge_map(Map::new(), patch, ctx),
            Some("delete") => return Ok(None),
            Some("merge") => {}
            _ => return Err(invalid(format!("unknown patch type {directive} in map"))),
        }
    }

    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, ctx)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(field) => (field.to_string(), true),
            None if key.starts_with("$deleteFromPrimitiveList") => {
                return Err(invalid(format!(
                    "invalid $deleteFromPrimitiveList key {key:?}"
                )));
            }
            None if key.starts_with("$setElementOrder") => {
                return Err(invalid(format!("invalid $setElementOrder key {key:?}")));
            }
            None => (key, false),
        };
        if is_delete_list && !patch_value.is_array() {
            return Err(invalid(format!(
                "{DELETE_FROM_PRIMITIVE_LIST}{key} must be a list"
            )));
        }
        let child = ctx.child(&key);
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let Some(slot) = original.get_mut(&key) else {
            if !is_delete_list && let Some(v) = new_value(patch_value, child)? {
                original.insert(key, v);
            }
            continue;
        };
        let original_value = std::mem::take(slot);
        let merged = match (original_value, patch_value) {
            (Value::Object(o), Value::Object(p)) => {
                if child.info.is_some_and(|i| i.replace) {
                    new_value(Value::Object(p), child)?
                } else {
                    // `$patch: delete` leaves an empty map, as in Kubernetes.
                    Some(Value::Object(
                        merge_map(o, p, child.ctx)?.unwrap_or_default(),
                    ))
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                Some(Value::Array(merge_list_field(o, p, child, is_delete_list)?))
            }
            (original_value, _) if is_delete_list => Some(original_value),
            (_, p) => new_value(p, child)?,
        };
        match merged {
            Some(v) => *slot = v,
            None => {
                original.shift_remove(&key);
            }
        }
    }
    Ok(Some(original))
}

/// A patch value for a key the original does not have: directives and nulls are resolved against
/// an empty value so that none of them is stored.
fn new_value(value: Value, child: Child) -> Result<Option<Value>> {
    Ok(match value {
        Value::Object(m) => merge_map(Map::new(), m, child.ctx)?.map(Value::Object),
        Value::Array(list) => Some(Value::Array(merge_list_field(
            Vec::new(),
            list,
            child,
            false,
        )?)),
        Value::Null => None,
        scalar => Some(scalar),
    })
}

/// An element of a replaced list: maps are resolved against an empty map, nested lists are
/// cleaned element by element. None when a map deletes itself.
fn clean(value: Value, ctx: Ctx) -> Result<Option<Value>> {
    Ok(match value {
        Value::Object(m) => merge_map(Map::new(), m, ctx)?.map(Value::Object),
        Value::Array(list) => {
            let mut out = Vec::with_capacity(list.len());
            for element in list {
                out.extend(clean(element, Ctx::Untyped)?);
            }
            Some(Value::Array(out))
        }
        scalar => Some(scalar),
    })
}

fn list_strategy(child: Child) -> ListStrategy {
    child
        .info
        .and_then(|i| i.list)
        .unwrap_or(ListStrategy::Atomic)
}

fn merge_key(child: Child) -> Option<&'static str> {
    match list_strategy(child) {
        ListStrategy::Merge { key } => Some(key),
        _ => None,
    }
}

/// Merges two lists by the strategy of the field.
fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    child: Child,
    is_delete_list: bool,
) -> Result<Vec<Value>> {
    if is_delete_list {
        return Ok(original
            .into_iter()
            .filter(|v| !patch.contains(v))
            .collect());
    }
    match list_strategy(child) {
        ListStrategy::Atomic => {
            // Replaced whole; elements are cleaned of directives and nulls.
            let mut out = Vec::with_capacity(patch.len());
            for element in patch {
                out.extend(clean(element, child.ctx)?);
            }
            Ok(out)
        }
        ListStrategy::Set => merge_list(original, patch, None, child.ctx),
        ListStrategy::Merge { key } => merge_list(original, patch, Some(key), child.ctx),
    }
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    key: Option<&str>,
    elem_ctx: Ctx,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let maps = element_kind_is_map(&original, &patch)?;
    if !maps {
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (patch_items, server_only): (Vec<Value>, Vec<Value>) =
            merged.into_iter().partition(|v| patch.contains(v));
        return Ok(normalize_order(
            patch_items,
            server_only,
            &patch,
            &original,
            None,
        ));
    }
    let Some(key) = key else {
        return Err(invalid("cannot merge lists of objects without a merge key"));
    };

    // Elements carrying `$patch` first.
    let mut original = original;
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for element in patch {
        let Value::Object(mut m) = element else {
            return Err(invalid("list element types are not identical"));
        };
        match m.get(DIRECTIVE).map(|d| d.as_str()) {
            None => plain.push(m),
            Some(Some("delete")) => {
                let Some(value) = m.get(key) else {
                    return Err(no_merge_key(key));
                };
                original.retain(|o| o.get(key) != Some(value));
            }
            Some(Some("replace")) => replace = true,
            Some(Some("merge")) => {
                m.shift_remove(DIRECTIVE);
                plain.push(m);
            }
            Some(_) => {
                return Err(invalid(format!(
                    "unknown patch type {} in list",
                    m.get(DIRECTIVE).unwrap_or(&Value::Null)
                )));
            }
        }
    }
    if replace {
        let mut out = Vec::with_capacity(plain.len());
        for m in plain {
            if let Some(m) = merge_map(Map::new(), m, elem_ctx)? {
                out.push(Value::Object(m));
            }
        }
        return Ok(out);
    }

    let mut merged = original.clone();
    for m in &plain {
        let Some(value) = m.get(key) else {
            return Err(no_merge_key(key));
        };
        let found = merged.iter().position(|o| o.get(key) == Some(value));
        match found {
            Some(i) => {
                let Value::Object(o) = std::mem::take(&mut merged[i]) else {
                    return Err(invalid("list element types are not identical"));
                };
                match merge_map(o, m.clone(), elem_ctx)? {
                    Some(o) => merged[i] = Value::Object(o),
                    None => {
                        merged.remove(i);
                    }
                }
            }
            None => {
                if let Some(m) = merge_map(Map::new(), m.clone(), elem_ctx)? {
                    merged.push(Value::Object(m));
                }
            }
        }
    }
    let patch_order: Vec<Value> = plain.into_iter().map(Value::Object).collect();
    let (patch_items, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| index_of(&patch_order, v, Some(key)).is_some());
    Ok(normalize_order(
        patch_items,
        server_only,
        &patch_order,
        &original,
        Some(key),
    ))
}

fn no_merge_key(key: &str) -> Error {
    invalid(format!(
        "list element does not contain declared merge key {key:?}"
    ))
}

/// Whether the elements of the lists are objects; errors for mixed kinds and lists of lists.
fn element_kind_is_map(a: &[Value], b: &[Value]) -> Result<bool> {
    let mut kind: Option<bool> = None;
    for v in a.iter().chain(b.iter()) {
        if v.is_array() {
            return Err(invalid("lists of lists are not supported"));
        }
        let is_map = v.is_object();
        match kind {
            None => kind = Some(is_map),
            Some(k) if k != is_map => {
                return Err(invalid("list element types are not identical"));
            }
            Some(_) => {}
        }
    }
    Ok(kind.unwrap_or(false))
}

/// The identity of a list element: its merge key value, or the element itself.
fn identity<'a>(v: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(k) => v.get(k),
        None => Some(v),
    }
}

fn index_of(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(item, key)?;
    list.iter().position(|v| identity(v, key) == Some(id))
}

/// Orders the merged list: patch items by `patch_order`, server-only items by `server_order`,
/// then interleaves them keeping the live order where both are known. Items new to the server
/// come before the remaining server-only items, as the API server does.
fn normalize_order(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    patch_items.sort_by_key(|v| index_of(patch_order, v, key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|v| index_of(server_order, v, key).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    index_of(server_order, l, key),
                    index_of(server_order, r, key),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// `$retainKeys`: clears the keys of `original` that are not listed.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<()> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(invalid("$retainKeys must be a list of field names"));
    };
    let mut keep = Vec::with_capacity(retain.len());
    for k in &retain {
        match k.as_str() {
            Some(k) => keep.push(k.to_string()),
            None => return Err(invalid("$retainKeys must be a list of field names")),
        }
    }
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with('$') {
            continue;
        }
        if !keep.contains(k) {
            return Err(invalid(format!(
                "field {k:?} is in the patch but not in $retainKeys"
            )));
        }
    }
    original.retain(|k, _| keep.contains(k));
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's list (removing it from `patch`) and orders it.
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ctx: Ctx,
) -> Result<()> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let order = match patch.shift_remove(&directive) {
            Some(Value::Array(order)) => order,
            _ => return Err(invalid(format!("{directive} must be a list"))),
        };
        let field = directive[SET_ELEMENT_ORDER.len()..].to_string();
        let child = ctx.child(&field);
        let key = merge_key(child);
        let original_list = match original.get(&field) {
            Some(Value::Array(l)) => Some(l.clone()),
            // Not a list in the live object: the patch value (if any) replaces it.
            _ => None,
        };
        let patch_list = match patch.shift_remove(&field) {
            None => None,
            Some(Value::Array(l)) => Some(l),
            Some(Value::Null) => {
                original.shift_remove(&field);
                continue;
            }
            Some(_) => return Err(invalid(format!("{field} must be a list"))),
        };
        if let Some(p) = &patch_list {
            validate_order(p, &order, key)?;
        }
        let server_order = original_list.clone().unwrap_or_default();
        let merged = match (original_list, patch_list) {
            (Some(o), None) => o,
            (None, Some(p)) => merge_list_field(Vec::new(), p, child, false)?,
            (Some(o), Some(p)) => merge_list_field(o, p, child, false)?,
            (None, None) => continue,
        };
        let (patch_items, server_only): (Vec<Value>, Vec<Value>) = merged
            .into_iter()
            .partition(|v| index_of(&order, v, key).is_some());
        let ordered = normalize_order(patch_items, server_only, &order, &server_order, key);
        original.insert(field, Value::Array(ordered));
    }
    Ok(())
}

/// The items of the patch list (deletions aside) must appear in `$setElementOrder` in the same
/// relative order.
fn validate_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<()> {
    let items: Vec<&Value> = patch
        .iter()
        .filter(|v| !(key.is_some() && v.get(DIRECTIVE).is_some()))
        .collect();
    let mut oi = 0;
    for item in items {
        let Some(id) = identity(item, key) else {
            return Err(no_merge_key(key.unwrap_or_default()));
        };
        loop {
            let Some(o) = order.get(oi) else {
                return Err(invalid(
                    "the order of the patch list does not match its $setElementOrder list",
                ));
            };
            oi += 1;
            if identity(o, key) == Some(id) {
                break;
            }
        }
    }
    Ok(())
}
