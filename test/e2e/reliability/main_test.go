package reliability

import (
	"fmt"
	"os"
	"testing"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := framework.RemoveBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
	}
	os.Exit(code)
}
