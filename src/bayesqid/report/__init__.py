"""Report: the HTML uncertainty report (page builder, figures, template) and plotting helpers
for notebooks. Imports every wing below."""
