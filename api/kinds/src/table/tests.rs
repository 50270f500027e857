//! Tests for the table module.
use super::*;
