// Package converter serves the MeshConfig conversion webhook.
package converter
