//! Harness for Skiff's end-to-end tests: starts real `skiff` processes and real clients.
