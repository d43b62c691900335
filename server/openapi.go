package server

import _ "embed"

// openAPI is gen/openapiv2/eventrelay.swagger.json, copied by `make generate` (CI checks the
// copy matches).
//
//go:embed openapi/eventrelay.swagger.json
var openAPI []byte

// OpenAPI returns the OpenAPI v2 document of every HTTP route.
func OpenAPI() []byte { return openAPI }
