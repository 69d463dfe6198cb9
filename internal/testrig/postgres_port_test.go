package testrig

import (
	"fmt"
	"net"
	"testing"
)

// A port taken between freePort and the server's bind: the server starts again on another.
func TestPostgresPortTakenAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	t.Parallel()
	p := newPostgres(t, "postgres-primary")
	p.run(t, p.bin+"/initdb", "-D", p.DataDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	taken := p.Port
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", taken))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p.launch(t)
	if p.Port == taken {
		t.Fatalf("the server reports the taken port %d", taken)
	}
	ExecSQL(t.Context(), t, p.DSN("postgres"), "SELECT 1")
}
