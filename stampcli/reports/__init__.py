"""Drawing a report: its sections, charts (SVG), the HTML page and the Excel workbook.

The figures come from :mod:`stampcli.service.report`; this package only lays them out.
"""
