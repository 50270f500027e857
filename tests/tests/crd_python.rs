//! The official Python `kubernetes` client's `CustomObjectsApi` against a real `skiff server`:
//! a CRD installed, its objects created, listed, read, merge-patched, their status and scale
//! written, watched and deleted (tests/python/custom_objects.py).

use skiff_tests::client::run_python_script;

#[test]
fn python_custom_objects_api() {
    run_python_script("custom_objects.py");
}
