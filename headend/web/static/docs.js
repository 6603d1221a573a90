// Swagger UI on /docs, from the app's own files: the description is read from the page
// (data-openapi); no online validator badge (offline, and the CSP allows no other host).
window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").getAttribute("data-openapi"),
  dom_id: "#swagger-ui",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout"
});
