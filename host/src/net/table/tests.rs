//! Unit tests of the routing table: name forms, compilation of Services and EndpointSlices,
//! local readiness, scale-to-zero Deployments.
