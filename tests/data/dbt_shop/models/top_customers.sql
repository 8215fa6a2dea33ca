select name, total from {{ ref('customer_totals') }} where total > 6
