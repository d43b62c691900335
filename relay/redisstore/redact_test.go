package redisstore

import "testing"

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"redis://localhost:6379/0", "redis://localhost:6379/0"},
		{"redis://user:pw@h:6379/2", "redis://user:xxxxx@h:6379/2"},
		{"rediss://:pw@h:6380", "rediss://:xxxxx@h:6380"},
		{"redis://h:1?password=pw&addr=h2:1", "redis://h:1?addr=h2%3A1&password=xxxxx"},
		{"redis://:s@h:26379?sentinel_password=a&password=b&master_name=m", "redis://:xxxxx@h:26379?master_name=m&password=xxxxx&sentinel_password=xxxxx"},
		{"redis://h?api_key=k&Auth_Token=t&client_name=c", "redis://h?Auth_Token=xxxxx&api_key=xxxxx&client_name=c"},
		{"redis://user@h", "redis://user@h"},
		{"unix:///run/redis.sock?password=pw", "unix:///run/redis.sock?password=xxxxx"},
		{"redis://h:1/%zz", "<invalid>"},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
