//go:build tools

package tools

import _ "github.com/regclient/regclient/cmd/regsync"
