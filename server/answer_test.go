package server

import (
	"encoding/json"
	"testing"
)

func TestWebhookAnswerIsWhatEncodingJSONWrites(t *testing.T) {
	for _, id := range []string{"evt_1", "", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", `q"uote`, `back\slash`, "<tag>&", "ünï", "\x7f", "a\tb", "\u2028"} {
		for _, dup := range []bool{false, true} {
			got, err := webhookAnswer(id, dup)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(struct {
				EventID   string `json:"event_id"`
				Duplicate bool   `json:"duplicate"`
			}{id, dup})
			if string(got) != string(want) {
				t.Errorf("webhookAnswer(%q, %v) = %s, encoding/json writes %s", id, dup, got, want)
			}
		}
	}
}
