//! The official Python `kubernetes` client drives a real `skiff server`: CRUD, conflicts,
//! pagination, scale and watch (tests/python/client_crud.py).

use skiff_tests::client::run_python_script;

#[test]
fn python_client_crud_and_watch() {
    run_python_script("client_crud.py");
}
