//! Tests of the pod network: names and address checks, and (as root) bridges and namespaces.

use super::*;
