package handlers

import "context"

// queueOnBind records, durably, that the pending invites for a newly bound
// 3PID must be delivered to the owner's homeserver. (Placeholder: issue 3.)
func (s *Server) queueOnBind(ctx context.Context, medium, address, mxid string) error { return nil }

// RunOnBindWorker delivers queued onbind callbacks until ctx ends.
// (Placeholder: issue 3.)
func (s *Server) RunOnBindWorker(ctx context.Context) { <-ctx.Done() }
