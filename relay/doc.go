// Package relay is the domain of eventrelay: sources and their configuration, turning a
// verified webhook into an Event, the Store and Verifier interfaces the adapters implement,
// the domain errors with their codes, and the opaque cursor and ack id codecs.
//
// It imports only the standard library and the generated message types. Adapters live in
// sub-packages: relay/verify (signature schemes), relay/redisstore (the Store on Redis
// Streams) and relay/embedded (an in-process Redis-compatible server). Transport lives in
// server/, wiring in cmd/.
package relay
