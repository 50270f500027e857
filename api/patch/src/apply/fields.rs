//! Walking objects by schema for server-side apply: field sets, comparison, merging and removal.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::fieldpath::{Path, PathElement, Set, canonical_json};
use crate::schema::{ApplyList, Child, Ctx};

/// Defaults of list map keys that clients may omit (`protocol` of ports defaults to TCP).
fn key_default(key: &str) -> Option<Value> {
    match key {
        "protocol" => Some(Value::String("TCP".into())),
        _ => None,
    }
}

fn list_kind(child: Child) -> ApplyList {
    child
        .info
        .and_then(|i| i.apply_list())
        .unwrap_or(ApplyList::Atomic)
}

fn is_atomic_object(child: Child) -> bool {
    child.info.is_some_and(|i| i.is_atomic_map()) || child.ctx.is_atomic_struct()
}

fn required(child: Child) -> bool {
    child.info.is_some_and(|i| i.required)
}

/// The child context of a list element.
fn element(child: Child) -> Child {
    Child {
        info: None,
        ctx: child.ctx,
    }
}

/// The path element of each list item, or None when the list is treated atomically (positional
/// list, a key missing, duplicate items).
fn item_elements(list: &[Value], child: Child) -> Option<Vec<PathElement>> {
    let pes: Vec<PathElement> = match list_kind(child) {
        ApplyList::Atomic => return None,
        ApplyList::Set => list
            .iter()
            .map(|v| PathElement::Value(canonical_json(v)))
            .collect(),
        ApplyList::Map(keys) => {
            let mut out = Vec::with_capacity(list.len());
            for item in list {
                let item = item.as_object()?;
                let mut key = Map::new();
                for k in keys {
                    let v = item.get(*k).cloned().or_else(|| key_default(k))?;
                    key.insert((*k).to_string(), v);
                }
                out.push(PathElement::Key(canonical_json(&Value::Object(key))));
            }
            out
        }
    };
    let unique: HashSet<&PathElement> = pes.iter().collect();
    (unique.len() == pes.len()).then_some(pes)
}

/// The fields set by an (applied) object, as the API server computes them: leaves, list items,
/// empty maps, and keys of maps that are not struct fields.
pub(super) fn field_set(obj: &Map<String, Value>, ctx: Ctx) -> Set {
    let mut set = Set::new();
    set_of_map(obj, ctx, &mut Vec::new(), &mut set);
    set
}

fn set_of_map(m: &Map<String, Value>, ctx: Ctx, path: &mut Path, set: &mut Set) {
    for (k, v) in m {
        let child = ctx.child(k);
        let declared = matches!(ctx, Ctx::Struct(_)) && child.info.is_some();
        path.push(PathElement::Field(k.clone()));
        set_of_value(v, child, path, set);
        if v.is_null() || v.as_object().is_some_and(Map::is_empty) || !declared {
            set.insert(path.clone());
        }
        path.pop();
    }
}

fn set_of_value(v: &Value, child: Child, path: &mut Path, set: &mut Set) {
    match v {
        Value::Object(m) if !is_atomic_object(child) => set_of_map(m, child.ctx, path, set),
        Value::Array(list) => match item_elements(list, child) {
            None => {
                set.insert(path.clone());
            }
            Some(pes) => {
                for (pe, item) in pes.into_iter().zip(list) {
                    let keyed = matches!(pe, PathElement::Key(_));
                    path.push(pe);
                    set.insert(path.clone());
                    if keyed {
                        set_of_value(item, element(child), path, set);
                    }
                    path.pop();
                }
            }
        },
        _ => {
            set.insert(path.clone());
        }
    }
}

/// The paths the applied object sets to null: the applier owns them and they are removed.
pub(super) fn null_paths(obj: &Map<String, Value>, ctx: Ctx) -> Set {
    let mut set = Set::new();
    nulls_in_map(obj, ctx, &mut Vec::new(), &mut set);
    set
}

fn nulls_in_map(m: &Map<String, Value>, ctx: Ctx, path: &mut Path, set: &mut Set) {
    for (k, v) in m {
        let child = ctx.child(k);
        path.push(PathElement::Field(k.clone()));
        match v {
            Value::Null => {
                set.insert(path.clone());
            }
            Value::Object(m) if !is_atomic_object(child) => nulls_in_map(m, child.ctx, path, set),
            Value::Array(list) => {
                if let Some(pes) = item_elements(list, child)
                    .filter(|_| matches!(list_kind(child), ApplyList::Map(_)))
                {
                    for (pe, item) in pes.into_iter().zip(list) {
                        if let Some(item) = item
                            .as_object()
                            .filter(|_| !is_atomic_object(element(child)))
                        {
                            path.push(pe);
                            nulls_in_map(item, child.ctx, path, set);
                            path.pop();
                        }
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// What changed between two objects.
#[derive(Debug, Default)]
pub(super) struct Comparison {
    pub(super) added: Set,
    pub(super) modified: Set,
    pub(super) removed: Set,
}

pub(super) fn compare(lhs: &Map<String, Value>, rhs: &Map<String, Value>, ctx: Ctx) -> Comparison {
    let mut cmp = Comparison::default();
    compare_maps(Some(lhs), Some(rhs), ctx, &mut Vec::new(), &mut cmp);
    cmp
}

fn compare_maps(
    lhs: Option<&Map<String, Value>>,
    rhs: Option<&Map<String, Value>>,
    ctx: Ctx,
    path: &mut Path,
    cmp: &mut Comparison,
) {
    let mut keys: Vec<&String> = lhs.iter().flat_map(|m| m.keys()).collect();
    for k in rhs.iter().flat_map(|m| m.keys()) {
        if !lhs.is_some_and(|l| l.contains_key(k)) {
            keys.push(k);
        }
    }
    for k in keys {
        path.push(PathElement::Field(k.clone()));
        compare_value(
            lhs.and_then(|m| m.get(k)),
            rhs.and_then(|m| m.get(k)),
            ctx.child(k),
            false,
            path,
            cmp,
        );
        path.pop();
    }
}

fn compare_value(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    child: Child,
    is_item: bool,
    path: &mut Path,
    cmp: &mut Comparison,
) {
    let granular = |v: Option<&Value>| v.is_none_or(|v| v.is_object()) && !is_atomic_object(child);
    let keyed = |v: Option<&Value>| match v {
        None => true,
        Some(Value::Array(list)) => item_elements(list, child).is_some(),
        Some(_) => false,
    };
    match (lhs, rhs) {
        (None, None) => {}
        _ if granular(lhs) && granular(rhs) => {
            let (l, r) = (
                lhs.and_then(Value::as_object),
                rhs.and_then(Value::as_object),
            );
            compare_maps(l, r, child.ctx, path, cmp);
            // A struct field or required field always exists in the typed object, so it is not
            // itself owned unless it is empty; list items and optional maps are.
            let empty = l.or(r).is_none_or(Map::is_empty);
            let node_tracked =
                is_item || !(matches!(child.ctx, Ctx::Struct(_)) || required(child)) || empty;
            if node_tracked {
                mark_presence(lhs, rhs, path, cmp);
            }
        }
        _ if lhs.is_none_or(Value::is_array)
            && rhs.is_none_or(Value::is_array)
            && keyed(lhs)
            && keyed(rhs) =>
        {
            let empty = Vec::new();
            let l = lhs.and_then(Value::as_array).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_array).unwrap_or(&empty);
            let lp = item_elements(l, child).unwrap_or_default();
            let rp = item_elements(r, child).unwrap_or_default();
            for (pe, item) in lp.iter().zip(l) {
                let other = rp.iter().position(|p| p == pe).map(|i| &r[i]);
                path.push(pe.clone());
                compare_value(Some(item), other, element(child), true, path, cmp);
                path.pop();
            }
            for (pe, item) in rp.iter().zip(r) {
                if !lp.contains(pe) {
                    path.push(pe.clone());
                    compare_value(None, Some(item), element(child), true, path, cmp);
                    path.pop();
                }
            }
            if !required(child) {
                mark_presence(lhs, rhs, path, cmp);
            }
        }
        (Some(l), Some(r)) => {
            if l != r {
                cmp.modified.insert(path.clone());
            }
        }
        _ => mark_presence(lhs, rhs, path, cmp),
    }
}

fn mark_presence(lhs: Option<&Value>, rhs: Option<&Value>, path: &Path, cmp: &mut Comparison) {
    if path.is_empty() {
        return;
    }
    match (lhs, rhs) {
        (None, Some(_)) => {
            cmp.added.insert(path.clone());
        }
        (Some(_), None) => {
            cmp.removed.insert(path.clone());
        }
        _ => {}
    }
}

/// Merges an applied configuration into the live object: granular maps merge key by key,
/// associative lists and sets merge by item, everything else is replaced.
pub(super) fn merge_applied(live: Option<Value>, applied: Value, ctx: Ctx) -> Value {
    merge_value(live, applied, Child { info: None, ctx })
}

fn merge_value(live: Option<Value>, applied: Value, child: Child) -> Value {
    match (live, applied) {
        (Some(Value::Object(mut l)), Value::Object(r)) if !is_atomic_object(child) => {
            for (k, rv) in r {
                let lv = l.get_mut(&k).map(std::mem::take);
                let merged = merge_value(lv, rv, child.ctx.child(&k));
                l.insert(k, merged);
            }
            Value::Object(l)
        }
        (Some(Value::Array(l)), Value::Array(r)) => {
            match (item_elements(&l, child), item_elements(&r, child)) {
                (Some(lp), Some(rp)) => Value::Array(merge_lists(l, lp, r, rp, child)),
                _ => Value::Array(r),
            }
        }
        (_, applied) => applied,
    }
}

/// Merges two associative lists or sets as structured-merge-diff does: live-only items keep their
/// place, applied items come in applied order, and a shared item is placed where the applied
/// order reaches it.
fn merge_lists(
    live: Vec<Value>,
    live_pes: Vec<PathElement>,
    applied: Vec<Value>,
    applied_pes: Vec<PathElement>,
    child: Child,
) -> Vec<Value> {
    let mut live: Vec<Option<Value>> = live.into_iter().map(Some).collect();
    let mut applied: Vec<Option<Value>> = applied.into_iter().map(Some).collect();
    let in_applied = |pe: &PathElement| applied_pes.contains(pe);
    let mut shared = applied_pes.iter().filter(|pe| live_pes.contains(pe));
    let mut next_shared = shared.next();
    let mut merged: Vec<&PathElement> = Vec::new();
    let mut out = Vec::with_capacity(live.len() + applied.len());
    let (mut l, mut r) = (0, 0);
    while l < live.len() || r < applied.len() {
        if l < live.len() && r < applied.len() {
            let pe = &live_pes[l];
            if *pe == applied_pes[r] {
                merged.push(pe);
                if let Some(item) = applied[r].take() {
                    out.push(merge_value(live[l].take(), item, element(child)));
                }
                l += 1;
                r += 1;
                next_shared = shared.next();
                continue;
            }
            if in_applied(pe) && next_shared.is_some_and(|n| n != pe) {
                // A shared item, but not the next one in applied order.
                l += 1;
                continue;
            }
        }
        if l < live.len() {
            let pe = &live_pes[l];
            if !in_applied(pe) {
                out.extend(live[l].take());
                l += 1;
                continue;
            }
            if merged.contains(&pe) {
                l += 1;
                continue;
            }
        }
        if r < applied.len() {
            let pe = &applied_pes[r];
            merged.push(pe);
            let matching = live_pes
                .iter()
                .position(|p| p == pe)
                .and_then(|i| live[i].take());
            if let Some(item) = applied[r].take() {
                out.push(merge_value(matching, item, element(child)));
            }
            r += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    out
}

/// Removes the field at `path` from `obj`. Maps left empty by the removal are removed too,
/// unless `owned` says someone owns them.
pub(super) fn remove_path(
    obj: &mut Map<String, Value>,
    ctx: Ctx,
    path: &[PathElement],
    owned: &dyn Fn(&[PathElement]) -> bool,
) {
    remove_in_map(obj, ctx, path, 0, owned);
}

fn remove_in_map(
    m: &mut Map<String, Value>,
    ctx: Ctx,
    path: &[PathElement],
    depth: usize,
    owned: &dyn Fn(&[PathElement]) -> bool,
) {
    let Some(PathElement::Field(name)) = path.get(depth) else {
        return;
    };
    if depth + 1 == path.len() {
        m.shift_remove(name);
        return;
    }
    let child = ctx.child(name);
    let Some(v) = m.get_mut(name) else {
        return;
    };
    remove_in_value(v, child, path, depth + 1, owned);
    let now_empty = v.as_object().is_some_and(Map::is_empty);
    if now_empty && !owned(&path[..=depth]) {
        m.shift_remove(name);
    }
}

fn remove_in_value(
    v: &mut Value,
    child: Child,
    path: &[PathElement],
    depth: usize,
    owned: &dyn Fn(&[PathElement]) -> bool,
) {
    match v {
        Value::Object(m) => remove_in_map(m, child.ctx, path, depth, owned),
        Value::Array(list) => {
            let index = match &path[depth] {
                PathElement::Index(i) => Some(*i).filter(|i| *i < list.len()),
                pe => item_elements(list, child).and_then(|pes| pes.iter().position(|p| p == pe)),
            };
            let Some(index) = index else {
                return;
            };
            if depth + 1 == path.len() {
                list.remove(index);
            } else {
                remove_in_value(&mut list[index], element(child), path, depth + 1, owned);
            }
        }
        _ => {}
    }
}
