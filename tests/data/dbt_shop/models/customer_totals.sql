select c.customer_id, c.name, sum(o.amount) as total
from {{ source('raw', 'orders') }} as o
join {{ source('raw', 'customers') }} as c on c.customer_id = o.customer_id
group by c.customer_id, c.name
