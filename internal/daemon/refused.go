package daemon

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/eventrelay/eventrelay/server"
)

// adminRefused answers GET /v1/admin/sources/{name}/refused[?limit=N]: the last refused
// webhook requests of the source, newest first (server.Refusal; relayctl refused).
func (m *Main) adminRefused(w http.ResponseWriter, r *http.Request, p *server.Principal) {
	name := r.PathValue("name")
	if _, err := m.svc.Source(name); err != nil || !canRead(p, name) {
		http.Error(w, "no source named "+name, http.StatusNotFound)
		return
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "limit: must be a non-negative integer", http.StatusBadRequest)
			return
		}
		limit = n
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(m.refused.Recent(name, limit))
}
