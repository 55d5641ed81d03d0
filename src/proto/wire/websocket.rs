//! WebSocket transport codec (stub).
