package handlers

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// Health endpoints for orchestrators and load balancers, outside /_matrix
// (they are not part of the API, so the validator lets them through):
//
//	GET /livez   200 while the process serves HTTP at all
//	GET /readyz  200 when the database answers and the lookup index is
//	             loaded, else 503; the body says which
func registerHealth(e *echo.Echo, s *Server) []*echo.Route {
	return []*echo.Route{
		e.GET("/livez", func(c echo.Context) error {
			c.Set(operationKey, "livez")
			return c.JSON(http.StatusOK, map[string]string{"status": "alive"})
		}),
		e.GET("/readyz", func(c echo.Context) error {
			c.Set(operationKey, "readyz")
			return s.readyz(c)
		}),
	}
}

// readyTimeout bounds the database check of /readyz.
const readyTimeout = 2 * time.Second

type readiness struct {
	// Errcode and Error make a 503 a Matrix error like any other.
	Errcode  string     `json:"errcode,omitempty"`
	Error    string     `json:"error,omitempty"`
	Status   string     `json:"status"` // "ready" or "not ready"
	Database string     `json:"database"`
	Index    indexState `json:"lookup_index"`
}

type indexState struct {
	Loaded     bool  `json:"loaded"`
	CatchingUp bool  `json:"catching_up"`
	Entries    int   `json:"entries"`
	Bytes      int64 `json:"bytes"`
}

func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	h := s.id.Health(ctx)
	out := readiness{Status: "ready", Database: "ok", Index: indexState{
		Loaded: h.Index.Loaded, CatchingUp: h.Index.CatchingUp, Entries: h.Index.Entries, Bytes: h.Index.Bytes,
	}}
	status := http.StatusOK
	if !h.Ready() {
		out.Status, status = "not ready", http.StatusServiceUnavailable
	}
	if h.Database != nil {
		out.Database = "unreachable"
		s.log.Warn("readiness: database check failed", "err", h.Database)
	}
	if status != http.StatusOK {
		out.Errcode = "M_UNKNOWN"
		out.Error = "Not ready: the database is " + out.Database
		if !h.Index.Loaded {
			out.Error += "; the lookup index is loading"
		}
	}
	return c.JSON(status, out)
}
